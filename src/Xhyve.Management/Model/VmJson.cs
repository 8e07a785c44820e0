using System.Text.Json;
using System.Text.Json.Serialization;

namespace Xhyve.Management.Model;

/// <summary>The stored form of a <see cref="VirtualMachine"/>: indented JSON, camelCase, unknown fields refused.</summary>
public static class VmJson
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
    };

    public static string Serialize(VirtualMachine vm) => JsonSerializer.Serialize(vm, Options);

    /// <summary>Parses a definition; <paramref name="source"/> (the file) is named in the error.</summary>
    public static VirtualMachine Deserialize(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<VirtualMachine>(json, Options) ?? throw new VmDefinitionException($"{source}: the file holds no VM definition (null)");
        }
        catch (JsonException e)
        {
            throw new VmDefinitionException($"{source}: not a valid VM definition: {e.Message}");
        }
    }
}
