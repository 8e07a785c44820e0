namespace Xhyve.HelpBuilder;

/// <summary>Help and assembly agree: a file per cmdlet and no other; every parameter (and only those) has a
/// section with a description and the yaml the assembly implies; synopsis, description and at least one
/// example are written; no placeholder is left.</summary>
public static class HelpCheck
{
    public static IReadOnlyList<string> Problems(IReadOnlyList<CmdletInfo> cmdlets, string docs)
    {
        var problems = new List<string>();
        foreach (var file in Directory.GetFiles(docs, "*.md"))
            if (!cmdlets.Any(c => c.Name == Path.GetFileNameWithoutExtension(file))) problems.Add($"{file}: no cmdlet {Path.GetFileNameWithoutExtension(file)} in the assembly");
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
            var expected = Syntax.Parameters(cmdlet);
            foreach (var p in expected)
            {
                var section = help.Parameters.FirstOrDefault(x => x.Name == p.Name);
                if (section == null) { problems.Add($"{file}: no section for -{p.Name}"); continue; }
                if (string.IsNullOrWhiteSpace(section.Description)) problems.Add($"{file}: -{p.Name} has no description");
                if (help.ParameterYaml.GetValueOrDefault(p.Name)?.Trim() != p.Yaml.Trim()) problems.Add($"{file}: -{p.Name}'s yaml differs from the assembly (run: Xhyve.HelpBuilder markdown)");
            }
            foreach (var extra in help.Parameters.Where(x => expected.All(p => p.Name != x.Name)))
                problems.Add($"{file}: -{extra.Name} is documented but the cmdlet has no such parameter");
        }
        return problems;
    }
}
