using System.Text;
using System.Text.RegularExpressions;
using Markdig;
using Markdig.Syntax;

namespace Xhyve.HelpBuilder;

/// <summary>
/// A conceptual help topic, docs/en-US/about_&lt;Topic&gt;.help.md in platyPS's about-topic form (a '# about_Topic'
/// title, then '## Short description', '## Long description' with '###' subtopics, ... '## See also'), and the
/// plain text Get-Help reads from about_&lt;Topic&gt;.help.txt in the module's culture folder.
/// </summary>
public sealed class AboutTopic
{
    public const string Suffix = ".help.md";
    /// <summary>The sections every topic needs written.</summary>
    public static readonly string[] RequiredSections = ["Short description", "Long description", "See also"];

    public string Name { get; private set; } = "";
    /// <summary>Section title to its blocks, in the file's order.</summary>
    public List<(string Title, List<Block> Blocks)> Sections { get; } = [];

    public static bool IsAboutFile(string path) => Path.GetFileName(path).StartsWith("about_", StringComparison.Ordinal) && path.EndsWith(Suffix, StringComparison.Ordinal);

    /// <summary>The topics of a docs folder.</summary>
    public static IEnumerable<string> Files(string docs) => Directory.GetFiles(docs, "about_*" + Suffix).OrderBy(f => f, StringComparer.Ordinal);

    public static AboutTopic Read(string path)
    {
        string text = File.ReadAllText(path).Replace("\r\n", "\n");
        var blocks = Markdown.Parse(text, new MarkdownPipelineBuilder().UseYamlFrontMatter().Build());
        string? name = null;
        var topic = new AboutTopic { _text = text };
        var sections = topic.Sections;
        foreach (var block in blocks)
        {
            if (block is Markdig.Extensions.Yaml.YamlFrontMatterBlock) continue;
            string source = text.Substring(block.Span.Start, block.Span.Length);
            if (block is HeadingBlock { Level: 1 }) { name ??= source.TrimStart('#').Trim(); continue; }
            if (block is HeadingBlock { Level: 2 }) { sections.Add((source.TrimStart('#').Trim(), [])); continue; }
            if (sections.Count == 0) throw new FormatException($"{path}: text before the first '## ' section");
            sections[^1].Blocks.Add(block);
        }
        if (name == null) throw new FormatException($"{path}: no '# about_Topic' title");
        topic.Name = name;
        return topic;
    }

    private string _text = "";

    /// <summary>What is missing or wrong: the title must match the file name, the required sections must have text.</summary>
    public IReadOnlyList<string> Problems(string path)
    {
        var problems = new List<string>();
        string expected = Path.GetFileName(path)[..^Suffix.Length];
        if (Name != expected) problems.Add($"{path}: titled '{Name}', expected '{expected}'");
        if (_text.Contains(HelpDocument.Placeholder, StringComparison.Ordinal)) problems.Add($"{path}: has a placeholder left");
        foreach (var required in RequiredSections)
            if (!Sections.Any(s => string.Equals(s.Title, required, StringComparison.OrdinalIgnoreCase) && s.Blocks.Count > 0))
                problems.Add($"{path}: no '## {required}' section with text");
        return problems;
    }

    /// <summary>The topic as Get-Help shows about_*.help.txt: section titles in capitals at the margin, subtopic
    /// titles indented two spaces, prose four, code eight; markdown links become their text.</summary>
    public string ToText()
    {
        var sb = new StringBuilder();
        sb.Append("TOPIC\n    ").Append(Name).Append("\n\n");
        foreach (var (title, blocks) in Sections)
        {
            sb.Append(title.ToUpperInvariant()).Append('\n');
            foreach (var block in blocks)
            {
                string source = _text.Substring(block.Span.Start, block.Span.Length);
                switch (block)
                {
                    case HeadingBlock:
                        sb.Append("  ").Append(source.TrimStart('#').Trim()).Append('\n');
                        break;
                    case FencedCodeBlock code:
                        foreach (var line in code.Lines.Lines.Take(code.Lines.Count)) sb.Append("        ").Append(line.ToString()).Append('\n');
                        break;
                    default:
                        foreach (var line in source.TrimEnd().Split('\n')) sb.Append("    ").Append(Plain(line.TrimEnd())).Append('\n');
                        break;
                }
                sb.Append('\n');
            }
            if (blocks.Count == 0) sb.Append('\n');
        }
        return sb.ToString().TrimEnd('\n') + "\n";
    }

    /// <summary>[text](uri) becomes text, `code` becomes code: the console shows no markup.</summary>
    private static string Plain(string line) =>
        Regex.Replace(Regex.Replace(line, @"\[(?<text>[^\]]+)\]\([^)]*\)", "${text}"), "`([^`]*)`", "$1");
}
