namespace Xhyve.HelpBuilder;

/// <summary>A parameter merged over its parameter sets, as help describes it. <see cref="DefaultFromCode"/>: the
/// default value is the property's initializer; otherwise the code does not show it (a default computed at run
/// time, such as the lowest free slot) and the help's own "Default value:" line is kept. <see cref="UnwrittenEnumDefault"/>:
/// an optional enum parameter without an initializer holds its zero member, which the help must name (or say what
/// the code does instead); a new section is seeded with it.</summary>
public sealed record HelpParameterInfo(string Name, string Type, string DeclaringType, IReadOnlyList<string> Sets, IReadOnlyList<string> Aliases,
    bool Required, string Position, string PipelineInput, bool Globbing, string DefaultValue, string? Description, bool DefaultFromCode = false,
    string? UnwrittenEnumDefault = null)
{
    public bool IsSwitch => Type == "System.Management.Automation.SwitchParameter";

    public const string DefaultValuePrefix = "Default value: ";

    /// <summary>The yaml block of platyPS's parameter section.</summary>
    public string Yaml => YamlWith(DefaultValue);

    /// <summary>The yaml block with the default the help wrote, where the code does not know one.</summary>
    public string YamlFor(string? writtenYaml)
    {
        if (DefaultFromCode) return Yaml;
        if (writtenYaml == null) return YamlWith(UnwrittenEnumDefault ?? DefaultValue);
        string? written = WrittenDefault(writtenYaml);
        return YamlWith(string.IsNullOrWhiteSpace(written) ? DefaultValue : written);
    }

    /// <summary>The value of a yaml block's "Default value:" line, or null.</summary>
    public static string? WrittenDefault(string yaml) => yaml.Replace("\r\n", "\n").Split('\n')
        .FirstOrDefault(l => l.StartsWith(DefaultValuePrefix.TrimEnd(), StringComparison.Ordinal))?[(DefaultValuePrefix.Length - 1)..].Trim();

    private string YamlWith(string defaultValue) => string.Join("\n",
        $"Type: {Syntax.ShortType(Type)}",
        $"Parameter Sets: {(Sets.Contains(ParameterInfo.AllSets) ? "(All)" : string.Join(", ", Sets))}",
        $"Aliases: {string.Join(", ", Aliases)}".TrimEnd(),
        "",
        $"Required: {Required}",
        $"Position: {Position}",
        DefaultValuePrefix + defaultValue,
        $"Accept pipeline input: {PipelineInput}",
        $"Accept wildcard characters: {Globbing}");
}

/// <summary>Syntax lines, merged parameters and input types of a cmdlet, in platyPS's conventions.</summary>
public static class Syntax
{
    public static string ShortType(string type)
    {
        if (type.StartsWith("System.Nullable`1<", StringComparison.Ordinal)) type = type[18..^1];
        return type == "System.Management.Automation.SwitchParameter" ? "SwitchParameter" : type[(type.LastIndexOf('.') + 1)..].Replace('+', '.');
    }

    public static IReadOnlyList<string> SetNames(CmdletInfo cmdlet)
    {
        var sets = cmdlet.Parameters.Select(p => p.SetName).Where(s => s != ParameterInfo.AllSets).Distinct().ToList();
        return sets.Count == 0 ? [ParameterInfo.AllSets] : sets.OrderBy(s => s == cmdlet.DefaultParameterSetName ? 0 : 1).ThenBy(s => s, StringComparer.Ordinal).ToList();
    }

    /// <summary>The parameters of one set, in syntax order: positional ones by position, then mandatory, then the rest by name.</summary>
    public static IReadOnlyList<ParameterInfo> InSet(CmdletInfo cmdlet, string set) => cmdlet.Parameters
        .Where(p => p.SetName == set || p.SetName == ParameterInfo.AllSets)
        .OrderBy(p => p.Position == int.MinValue ? int.MaxValue : p.Position).ThenBy(p => p.Mandatory ? 0 : 1).ThenBy(p => p.Name, StringComparer.Ordinal)
        .ToList();

    public static IEnumerable<(string Title, string Set, string Line)> Sets(CmdletInfo cmdlet)
    {
        foreach (var set in SetNames(cmdlet))
        {
            var parts = new List<string> { cmdlet.Name };
            foreach (var p in InSet(cmdlet, set))
            {
                bool isSwitch = p.Type == "System.Management.Automation.SwitchParameter";
                string name = p.Position == int.MinValue ? $"-{p.Name}" : $"[-{p.Name}]";
                string value = isSwitch ? name : $"{name} <{ShortType(p.Type)}>";
                parts.Add(p.Mandatory ? value : $"[{value}]");
            }
            if (cmdlet.SupportsShouldProcess) parts.AddRange(["[-WhatIf]", "[-Confirm]"]);
            parts.Add("[<CommonParameters>]");
            string title = set == ParameterInfo.AllSets ? "__AllParameterSets" : set + (set == cmdlet.DefaultParameterSetName ? " (Default)" : "");
            yield return (title, set, string.Join(" ", parts));
        }
    }

    /// <summary>Every parameter once (with -WhatIf and -Confirm for ShouldProcess cmdlets), sorted by name as platyPS does.</summary>
    public static IReadOnlyList<HelpParameterInfo> Parameters(CmdletInfo cmdlet)
    {
        var merged = cmdlet.Parameters.GroupBy(p => p.Name).Select(g =>
        {
            var first = g.First();
            bool byValue = g.Any(p => p.FromPipeline), byName = g.Any(p => p.FromPipelineByPropertyName);
            string pipeline = (byValue, byName) switch
            {
                (true, true) => "True (ByPropertyName, ByValue)", (true, false) => "True (ByValue)", (false, true) => "True (ByPropertyName)", _ => "False",
            };
            var positions = g.Select(p => p.Position).Distinct().ToList();
            string position = positions.Count == 1 && positions[0] != int.MinValue ? positions[0].ToString(System.Globalization.CultureInfo.InvariantCulture) : "Named";
            bool isSwitch = first.Type == "System.Management.Automation.SwitchParameter";
            string? initial = first.DefaultValue;
            return new HelpParameterInfo(first.Name, first.Type, first.DeclaringType, g.Select(p => p.SetName).Distinct().ToList(), first.Aliases,
                g.All(p => p.Mandatory), position, pipeline, first.SupportsWildcards, initial ?? (isSwitch ? "False" : "None"), null, initial != null || isSwitch,
                initial == null && !g.All(p => p.Mandatory) ? first.EnumZero : null);
        }).ToList();
        if (cmdlet.SupportsShouldProcess)
        {
            merged.Add(new HelpParameterInfo("Confirm", "System.Management.Automation.SwitchParameter", "", [ParameterInfo.AllSets], ["cf"], false, "Named", "False", false, "False",
                "Prompts you for confirmation before running the cmdlet.", true));
            merged.Add(new HelpParameterInfo("WhatIf", "System.Management.Automation.SwitchParameter", "", [ParameterInfo.AllSets], ["wi"], false, "Named", "False", false, "False",
                "Shows what would happen if the cmdlet runs. The cmdlet is not run.", true));
        }
        return merged.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>The types a cmdlet takes from the pipeline (by value), or None.</summary>
    public static IReadOnlyList<string> InputTypes(CmdletInfo cmdlet)
    {
        var types = cmdlet.Parameters.Where(p => p.FromPipeline).Select(p => p.Type).Distinct().ToList();
        return types.Count == 0 ? ["None"] : types;
    }
}
