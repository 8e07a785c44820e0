using Markdig;
using Markdig.Syntax;

namespace Xhyve.HelpBuilder;

public sealed record HelpExample(string Title, string Code, string Remarks);

public sealed record HelpParameter(string Name, string Description);

/// <summary>
/// One cmdlet's help as docs/en-US/&lt;Cmdlet&gt;.md holds it, in platyPS's markdown schema (2.0.0): the prose
/// people write (synopsis, description, examples, parameter descriptions, notes, links). Syntax and the
/// parameters' yaml blocks come from the assembly, so they are regenerated, not read.
/// </summary>
public sealed class HelpDocument
{
    public string Name { get; set; } = "";
    public string Synopsis { get; set; } = "";
    public string Description { get; set; } = "";
    public List<HelpExample> Examples { get; } = [];
    public List<HelpParameter> Parameters { get; } = [];
    /// <summary>Type name to what it means as input (INPUTS sections).</summary>
    public Dictionary<string, string> Inputs { get; } = [];
    public Dictionary<string, string> Outputs { get; } = [];
    public string Notes { get; set; } = "";
    public string RelatedLinks { get; set; } = "";
    /// <summary>The yaml blocks as written, by parameter name, to check them against the assembly.</summary>
    public Dictionary<string, string> ParameterYaml { get; } = [];

    public const string Placeholder = "{{ Fill in }}";

    /// <summary>Reads a help markdown file; <see cref="FormatException"/> names the file and what is wrong.</summary>
    public static HelpDocument Read(string path)
    {
        string text = File.ReadAllText(path).Replace("\r\n", "\n");
        var pipeline = new MarkdownPipelineBuilder().UseYamlFrontMatter().Build();
        var blocks = Markdown.Parse(text, pipeline);
        var doc = new HelpDocument();
        string section = "", sub = "";
        var pending = new List<string>();
        string? code = null;

        void Flush()
        {
            string prose = string.Join("\n\n", pending).Trim();
            pending.Clear();
            switch (section)
            {
                case "SYNOPSIS": doc.Synopsis = prose; break;
                case "DESCRIPTION": doc.Description = prose; break;
                case "NOTES": doc.Notes = prose; break;
                case "RELATED LINKS": doc.RelatedLinks = prose; break;
                case "EXAMPLES" when sub.Length > 0: doc.Examples.Add(new HelpExample(sub, code ?? "", prose)); break;
                case "PARAMETERS" when sub.StartsWith('-'): doc.Parameters.Add(new HelpParameter(sub[1..], prose)); break;
                case "INPUTS" when sub.Length > 0: doc.Inputs[sub] = prose; break;
                case "OUTPUTS" when sub.Length > 0: doc.Outputs[sub] = prose; break;
            }
            code = null;
        }

        foreach (var block in blocks)
        {
            string source = text.Substring(block.Span.Start, block.Span.Length);
            switch (block)
            {
                case Markdig.Extensions.Yaml.YamlFrontMatterBlock:
                    break;
                case HeadingBlock h:
                    string title = source.TrimStart('#').Trim();
                    if (h.Level == 1) { doc.Name = title; continue; }
                    Flush();
                    if (h.Level == 2) { section = title; sub = ""; }
                    else sub = title;
                    break;
                case FencedCodeBlock f:
                    string body = string.Join("\n", f.Lines.Lines.Take(f.Lines.Count).Select(l => l.ToString()));
                    if (section == "PARAMETERS" && f.Info == "yaml") doc.ParameterYaml[sub.TrimStart('-')] = body;
                    else if (section == "EXAMPLES") code = code == null ? body : code + "\n" + body;
                    break;
                default:
                    pending.Add(source.Trim());
                    break;
            }
        }
        Flush();
        if (doc.Name.Length == 0) throw new FormatException($"{path}: no '# Verb-Noun' title");
        return doc;
    }
}
