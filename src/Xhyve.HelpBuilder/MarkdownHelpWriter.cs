using System.Text;
using System.Xml.Linq;

namespace Xhyve.HelpBuilder;

/// <summary>
/// Writes a cmdlet's help markdown in platyPS's schema (what New-MarkdownHelp / Update-MarkdownHelp make):
/// the syntax and each parameter's yaml block from the assembly; the prose from the existing file, else
/// from the code's documentation comments, else a placeholder the help test refuses.
/// </summary>
public static class MarkdownHelpWriter
{
    public const string CommonParametersText = "This cmdlet supports the common parameters: -Debug, -ErrorAction, -ErrorVariable, " +
        "-InformationAction, -InformationVariable, -OutVariable, -OutBuffer, -PipelineVariable, -ProgressAction, -Verbose, " +
        "-WarningAction, and -WarningVariable. For more information, see " +
        "[about_CommonParameters](http://go.microsoft.com/fwlink/?LinkID=113216).";

    public static string Write(CmdletInfo cmdlet, HelpDocument? existing, DocComments comments)
    {
        var md = new StringBuilder();
        md.Append("---\nexternal help file: Xhyve.PowerShell.dll-Help.xml\nModule Name: Xhyve\nonline version:\nschema: 2.0.0\n---\n\n");
        md.Append($"# {cmdlet.Name}\n\n## SYNOPSIS\n{Prose(existing?.Synopsis, Synopsis(cmdlet, comments))}\n\n## SYNTAX\n");
        foreach (var set in Syntax.Sets(cmdlet))
            md.Append($"\n### {set.Title}\n```\n{set.Line}\n```\n");
        md.Append($"\n## DESCRIPTION\n{Prose(existing?.Description, null)}\n\n## EXAMPLES\n");
        var examples = existing?.Examples.Count > 0 ? existing.Examples : [new HelpExample("Example 1", "PS C:\\> " + HelpDocument.Placeholder, HelpDocument.Placeholder)];
        foreach (var e in examples)
            md.Append($"\n### {e.Title}\n```powershell\n{e.Code}\n```\n\n{e.Remarks}\n");
        md.Append("\n## PARAMETERS\n");
        foreach (var p in Syntax.Parameters(cmdlet))
        {
            string? description = existing?.Parameters.FirstOrDefault(x => x.Name == p.Name)?.Description;
            md.Append($"\n### -{p.Name}\n{Prose(description, p.Description ?? comments.Property(p.DeclaringType, p.Name))}\n\n```yaml\n{p.YamlFor(existing?.ParameterYaml.GetValueOrDefault(p.Name))}\n```\n");
        }
        md.Append($"\n### CommonParameters\n{CommonParametersText}\n\n## INPUTS\n");
        foreach (var input in Syntax.InputTypes(cmdlet))
            md.Append($"\n### {input}\n{existing?.Inputs.GetValueOrDefault(input) ?? ""}\n");
        md.Append("\n## OUTPUTS\n");
        foreach (var output in cmdlet.OutputTypes)
            md.Append($"\n### {output}\n{existing?.Outputs.GetValueOrDefault(output) ?? ""}\n");
        md.Append($"\n## NOTES\n{existing?.Notes ?? ""}\n\n## RELATED LINKS\n{existing?.RelatedLinks ?? ""}\n");
        return System.Text.RegularExpressions.Regex.Replace(md.ToString(), "\n{3,}", "\n\n");
    }

    /// <summary>The class comment reads "Verb-Noun: does this."; the synopsis is "Does this."</summary>
    private static string? Synopsis(CmdletInfo cmdlet, DocComments comments)
    {
        string? summary = comments.Type(cmdlet.TypeName);
        if (summary == null || !summary.StartsWith(cmdlet.Name + ": ", StringComparison.Ordinal)) return summary;
        string rest = summary[(cmdlet.Name.Length + 2)..];
        return rest.Length == 0 ? null : char.ToUpperInvariant(rest[0]) + rest[1..];
    }

    private static string Prose(string? written, string? fromCode) =>
        !string.IsNullOrWhiteSpace(written) ? written : !string.IsNullOrWhiteSpace(fromCode) ? fromCode : HelpDocument.Placeholder;
}

/// <summary>The &lt;summary&gt; comments of the cmdlet assembly's XML documentation file.</summary>
public sealed class DocComments
{
    private readonly Dictionary<string, string> _summaries = [];

    public DocComments(string? xmlPath)
    {
        if (xmlPath == null || !File.Exists(xmlPath)) return;
        foreach (var member in XDocument.Load(xmlPath).Descendants("member"))
        {
            var summary = member.Element("summary");
            if (summary == null) continue;
            // <see cref="T:X.Y"/> becomes Y; whitespace runs (the comment's line breaks) become single spaces.
            string text = string.Concat(summary.Nodes().Select(n => n is XElement e ? (string?)e.Attribute("cref")?.Value.Split('.').Last() ?? e.Value : n.ToString()));
            _summaries[(string)member.Attribute("name")!] = System.Text.RegularExpressions.Regex.Replace(System.Net.WebUtility.HtmlDecode(text), @"\s+", " ").Trim();
        }
    }

    public string? Type(string fullName) => _summaries.GetValueOrDefault("T:" + fullName);
    public string? Property(string declaringType, string name) => _summaries.GetValueOrDefault($"P:{declaringType}.{name}");
}
