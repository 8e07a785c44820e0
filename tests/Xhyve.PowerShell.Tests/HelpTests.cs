using System.Xml.Linq;
using Xhyve.HelpBuilder;

namespace Xhyve.PowerShell.Tests;

/// <summary>docs/en-US (platyPS markdown) and the MAML built from it cover every cmdlet and parameter, and only those.</summary>
public sealed class HelpTests
{
    private static readonly string Assembly = Path.Combine(AppContext.BaseDirectory, "Xhyve.PowerShell.dll");
    private static readonly IReadOnlyList<CmdletInfo> Cmdlets = CmdletMetadata.Read(Assembly);
    private static string Docs => Path.Combine(CmdletMetadataTests.Root, "docs", "en-US");

    [Fact]
    public void EveryCmdletAndParameter_HasWrittenHelp_AndNothingElseDoes() =>
        Assert.Empty(HelpCheck.Problems(Cmdlets, Docs));

    [Fact]
    public void RegeneratingTheMarkdown_ChangesNothing()
    {
        var comments = new DocComments(Path.ChangeExtension(Assembly, ".xml"));
        foreach (var cmdlet in Cmdlets)
        {
            string file = Path.Combine(Docs, cmdlet.Name + ".md");
            Assert.True(File.ReadAllText(file) == MarkdownHelpWriter.Write(cmdlet, HelpDocument.Read(file), comments),
                $"{file} is not what Xhyve.HelpBuilder markdown writes; run it and commit the result");
        }
    }

    [Fact]
    public void TheCheck_FindsAMissingParameterSection_AndAnUnknownOne()
    {
        string copy = Directory.CreateTempSubdirectory("help").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(Docs)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            string start = Path.Combine(copy, "Start-XhyveVM.md");
            File.WriteAllText(start, File.ReadAllText(start).Replace("### -PassThru", "### -PassTrough"));
            var problems = HelpCheck.Problems(Cmdlets, copy);
            Assert.Contains(problems, p => p.EndsWith("no section for -PassThru", StringComparison.Ordinal));
            Assert.Contains(problems, p => p.Contains("-PassTrough is documented but the cmdlet has no such parameter"));
        }
        finally { Directory.Delete(copy, true); }
    }

    [Fact]
    public void Maml_HasEveryCmdlet_WithItsParametersSyntaxAndExamples()
    {
        var maml = MamlWriter.Write(Cmdlets.Select(c => (c, HelpDocument.Read(Path.Combine(Docs, c.Name + ".md")))));
        XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10", mamlNs = "http://schemas.microsoft.com/maml/2004/10", dev = "http://schemas.microsoft.com/maml/dev/2004/10";
        var commands = maml.Root!.Elements(command + "command").ToList();
        Assert.Equal(Cmdlets.Select(c => c.Name), commands.Select(c => c.Element(command + "details")!.Element(command + "name")!.Value));
        foreach (var (cmdlet, element) in Cmdlets.Zip(commands))
        {
            var documented = element.Element(command + "parameters")!.Elements(command + "parameter").Select(p => p.Element(mamlNs + "name")!.Value).ToHashSet();
            var expected = cmdlet.ParameterNames.Concat(cmdlet.SupportsShouldProcess ? ["WhatIf", "Confirm"] : []).ToHashSet();
            Assert.True(expected.SetEquals(documented), cmdlet.Name);
            Assert.Equal(Syntax.SetNames(cmdlet).Count, element.Element(command + "syntax")!.Elements(command + "syntaxItem").Count());
            Assert.Contains(element.Element(command + "examples")!.Elements(command + "example"), e => e.Element(dev + "code")!.Value.Length > 0);
            Assert.NotEmpty(element.Element(command + "details")!.Element(mamlNs + "description")!.Value);
        }
    }
}
