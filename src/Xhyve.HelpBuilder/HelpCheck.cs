using System.Text.RegularExpressions;

namespace Xhyve.HelpBuilder;

/// <summary>Help and assembly agree: a file per cmdlet and no other (besides about topics); every parameter (and
/// only those) has a section with a description and the yaml the assembly implies, its default value included
/// where the code has one; synopsis, description and at least one example are written, each example with the
/// explanation after its code; related links name other cmdlets and the module's about topic, which exists;
/// no placeholder is left.</summary>
public static class HelpCheck
{
    /// <summary>The module's conceptual topic, which every cmdlet's help links to.</summary>
    public const string AboutTopicName = "about_Xhyve";

    public static IReadOnlyList<string> Problems(IReadOnlyList<CmdletInfo> cmdlets, string docs)
    {
        var problems = new List<string>();
        foreach (var file in Directory.GetFiles(docs, "*.md").Where(f => !AboutTopic.IsAboutFile(f)))
            if (!cmdlets.Any(c => c.Name == Path.GetFileNameWithoutExtension(file))) problems.Add($"{file}: no cmdlet {Path.GetFileNameWithoutExtension(file)} in the assembly");
        string about = Path.Combine(docs, AboutTopicName + AboutTopic.Suffix);
        if (!File.Exists(about)) problems.Add($"{about}: missing (the module's about topic, which every cmdlet links to)");
        foreach (var topic in AboutTopic.Files(docs))
            problems.AddRange(AboutTopic.Read(topic).Problems(topic));
        foreach (var cmdlet in cmdlets)
        {
            string file = Path.Combine(docs, cmdlet.Name + ".md");
            if (!File.Exists(file)) { problems.Add($"{file}: missing (run: Xhyve.HelpBuilder markdown)"); continue; }
            var help = HelpDocument.Read(file);
            if (help.Name != cmdlet.Name) problems.Add($"{file}: titled '{help.Name}'");
            if (File.ReadAllText(file).Contains(HelpDocument.Placeholder, StringComparison.Ordinal)) problems.Add($"{file}: has a placeholder left");
            if (string.IsNullOrWhiteSpace(help.Synopsis)) problems.Add($"{file}: no synopsis");
            if (string.IsNullOrWhiteSpace(help.Description)) problems.Add($"{file}: no description");
            if (help.Examples.Count == 0 || help.Examples.Any(e => string.IsNullOrWhiteSpace(e.Code))) problems.Add($"{file}: needs at least one example with code");
            foreach (var e in help.Examples.Where(e => string.IsNullOrWhiteSpace(e.Remarks)))
                problems.Add($"{file}: {e.Title} has no explanation after its code");
            problems.AddRange(LinkProblems(file, cmdlet, help, cmdlets));
            var expected = Syntax.Parameters(cmdlet);
            foreach (var p in expected)
            {
                var section = help.Parameters.FirstOrDefault(x => x.Name == p.Name);
                if (section == null) { problems.Add($"{file}: no section for -{p.Name}"); continue; }
                if (string.IsNullOrWhiteSpace(section.Description)) problems.Add($"{file}: -{p.Name} has no description");
                string? yaml = help.ParameterYaml.GetValueOrDefault(p.Name);
                string? written = yaml == null ? null : HelpParameterInfo.WrittenDefault(yaml);
                if (p.DefaultFromCode && written != null && written != p.DefaultValue)
                    problems.Add($"{file}: -{p.Name}'s default value is {p.DefaultValue} in the code, but the help says {written} (run: Xhyve.HelpBuilder markdown)");
                else if (p.UnwrittenEnumDefault != null && written is null or "None")
                    problems.Add($"{file}: -{p.Name}'s default value is left None, but without an argument it is {p.UnwrittenEnumDefault} (the enum's zero member); write that, or what the cmdlet does instead, on its 'Default value:' line");
                else if (yaml?.Trim() != p.YamlFor(yaml).Trim()) problems.Add($"{file}: -{p.Name}'s yaml differs from the assembly (run: Xhyve.HelpBuilder markdown)");
            }
            foreach (var extra in help.Parameters.Where(x => expected.All(p => p.Name != x.Name)))
                problems.Add($"{file}: -{extra.Name} is documented but the cmdlet has no such parameter");
        }
        return problems;
    }

    /// <summary>RELATED LINKS: about_Xhyve, at least one other cmdlet, and no link to a cmdlet that does not exist.</summary>
    private static IEnumerable<string> LinkProblems(string file, CmdletInfo cmdlet, HelpDocument help, IReadOnlyList<CmdletInfo> cmdlets)
    {
        var links = Regex.Matches(help.RelatedLinks, @"\[(?<text>[^\]]+)\]\((?<uri>[^)]*)\)").Select(m => m.Groups["text"].Value.Trim()).ToList();
        if (!links.Contains(AboutTopicName)) yield return $"{file}: RELATED LINKS has no link to {AboutTopicName}";
        if (!links.Any(l => l != cmdlet.Name && cmdlets.Any(c => c.Name == l))) yield return $"{file}: RELATED LINKS names no other cmdlet it works with";
        foreach (var l in links.Where(l => Regex.IsMatch(l, @"^\w+-Xhyve\w*$") && cmdlets.All(c => c.Name != l)))
            yield return $"{file}: RELATED LINKS names {l}, which is no cmdlet of the module";
    }
}
