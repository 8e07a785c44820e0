using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Xhyve.HelpBuilder;

/// <summary>
/// Writes MAML (the XML Get-HelpHelp reads from Xhyve.PowerShell.dll-Help.xml) from the help markdown and
/// the assembly's metadata, in the shape platyPS's New-ExternalHelp produces.
/// </summary>
public static class MamlWriter
{
    private static readonly XNamespace Msh = "http://msh";
    private static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
    private static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    private static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

    public static XDocument Write(IEnumerable<(CmdletInfo Cmdlet, HelpDocument Help)> cmdlets) => new(new XDeclaration("1.0", "utf-8", null),
        new XElement(Msh + "helpItems", new XAttribute("schema", "maml"), cmdlets.Select(c => CommandElement(c.Cmdlet, c.Help))));

    private static XElement CommandElement(CmdletInfo cmdlet, HelpDocument help)
    {
        string Describe(HelpParameterInfo p) => help.Parameters.FirstOrDefault(x => x.Name == p.Name)?.Description ?? p.Description ?? "";
        // A default the code does not show (computed at run time) is the one the help wrote.
        var parameters = Syntax.Parameters(cmdlet).Select(p => p.DefaultFromCode || !help.ParameterYaml.TryGetValue(p.Name, out var yaml) ? p
            : p with { DefaultValue = HelpParameterInfo.WrittenDefault(yaml) ?? p.DefaultValue }).ToList();
        return new XElement(Command + "command",
            new XAttribute(XNamespace.Xmlns + "maml", Maml), new XAttribute(XNamespace.Xmlns + "command", Command), new XAttribute(XNamespace.Xmlns + "dev", Dev),
            new XElement(Command + "details",
                new XElement(Command + "name", cmdlet.Name), new XElement(Command + "verb", cmdlet.Verb), new XElement(Command + "noun", cmdlet.Noun),
                Description(help.Synopsis)),
            Description(help.Description),
            new XElement(Command + "syntax", Syntax.Sets(cmdlet).Select(set => new XElement(Command + "syntaxItem",
                new XElement(Maml + "name", cmdlet.Name),
                Syntax.InSet(cmdlet, set.Set).Select(p => parameters.Single(x => x.Name == p.Name))
                    .Concat(cmdlet.SupportsShouldProcess ? parameters.Where(x => x.Name is "WhatIf" or "Confirm") : [])
                    .Select(p => Parameter(p, Describe(p), inSyntax: true))))),
            new XElement(Command + "parameters", parameters.Select(p => Parameter(p, Describe(p), inSyntax: false))),
            new XElement(Command + "inputTypes", Syntax.InputTypes(cmdlet).Select(t => new XElement(Command + "inputType",
                new XElement(Dev + "type", new XElement(Maml + "name", t)), Description(help.Inputs.GetValueOrDefault(t) ?? "")))),
            new XElement(Command + "returnValues", cmdlet.OutputTypes.Select(t => new XElement(Command + "returnValue",
                new XElement(Dev + "type", new XElement(Maml + "name", t)), Description(help.Outputs.GetValueOrDefault(t) ?? "")))),
            new XElement(Maml + "alertSet", new XElement(Maml + "alert", Paragraphs(help.Notes))),
            new XElement(Command + "examples", help.Examples.Select(e => new XElement(Command + "example",
                new XElement(Maml + "title", $"-------------------------- {e.Title} --------------------------"),
                new XElement(Dev + "code", e.Code),
                new XElement(Dev + "remarks", Paragraphs(e.Remarks))))),
            new XElement(Command + "relatedLinks", Regex.Matches(help.RelatedLinks, @"\[(?<text>[^\]]+)\]\((?<uri>[^)]*)\)").Select(m =>
                new XElement(Maml + "navigationLink", new XElement(Maml + "linkText", m.Groups["text"].Value), new XElement(Maml + "uri", m.Groups["uri"].Value)))));
    }

    private static XElement Parameter(HelpParameterInfo p, string description, bool inSyntax)
    {
        bool array = p.Type.EndsWith("[]", StringComparison.Ordinal);
        var element = new XElement(Command + "parameter",
            new XAttribute("required", p.Required.ToString().ToLowerInvariant()), new XAttribute("variableLength", array.ToString().ToLowerInvariant()),
            new XAttribute("globbing", p.Globbing.ToString().ToLowerInvariant()), new XAttribute("pipelineInput", p.PipelineInput),
            new XAttribute("position", p.Position == "Named" ? "named" : p.Position), new XAttribute("aliases", p.Aliases.Count == 0 ? "none" : string.Join(", ", p.Aliases)),
            new XElement(Maml + "name", p.Name),
            Description(description));
        if (!p.IsSwitch || !inSyntax)
            element.Add(new XElement(Command + "parameterValue", new XAttribute("required", (!p.IsSwitch).ToString().ToLowerInvariant()),
                new XAttribute("variableLength", array.ToString().ToLowerInvariant()), Syntax.ShortType(p.Type)));
        element.Add(new XElement(Dev + "type", new XElement(Maml + "name", Syntax.ShortType(p.Type)), new XElement(Maml + "uri")),
            new XElement(Dev + "defaultValue", p.DefaultValue));
        return element;
    }

    private static XElement Description(string text) => new(Maml + "description", Paragraphs(text));

    /// <summary>Blank-line separated paragraphs, each one maml:para.</summary>
    private static IEnumerable<XElement> Paragraphs(string text) =>
        text.Replace("\r\n", "\n").Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => new XElement(Maml + "para", p));
}
