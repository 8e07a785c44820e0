using System.Text.Json;
using System.Text.Json.Serialization;

namespace Xhyve.Management.Model;

/// <summary>The stored form of a <see cref="VirtualMachine"/>: indented JSON, camelCase; unknown fields, a field given
/// twice and values longer than <see cref="VirtualMachine.LimitProblems"/> allows are refused.</summary>
public static class VmJson
{
    /// <summary>The largest vm.json the store reads: a definition is a few KiB, so anything near this is not one.</summary>
    public const int MaxFileBytes = 1 << 20;

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        // A field given twice would otherwise be taken from its last copy: an edit that is not what it looks like.
        AllowDuplicateProperties = false,
    };

    public static string Serialize(VirtualMachine vm) => JsonSerializer.Serialize(vm, Options);

    /// <summary>Parses a definition; <paramref name="source"/> (the file) is named in the error.</summary>
    public static VirtualMachine Deserialize(string json, string source)
    {
        VirtualMachine vm;
        try
        {
            vm = JsonSerializer.Deserialize<VirtualMachine>(json, Options) ?? throw new VmDefinitionException($"{source}: the file holds no VM definition (null)");
        }
        catch (JsonException e)
        {
            // The path names the field in the file ("$.disks[0].path"); the message alone names only the property.
            string at = e.Path is { Length: > 0 } path ? $" at {path}" : "";
            throw new VmDefinitionException($"{source}: not a valid VM definition{at}: {e.Message}");
        }
        var problems = vm.LimitProblems();
        if (problems.Count > 0) throw new VmDefinitionException($"{source}: {string.Join("; ", problems)}");
        for (int i = 0; i < vm.NetworkAdapters.Count; i++)
        {
            try { vm.NetworkAdapters[i].UpgradeLegacyFields(); }
            catch (FormatException e) { throw new VmDefinitionException($"{source}: field 'networkAdapters[{i}]': {e.Message}"); }
        }
        return vm;
    }
}
