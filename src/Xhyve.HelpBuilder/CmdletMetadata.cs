using System.Collections.Immutable;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace Xhyve.HelpBuilder;

/// <summary>One [Parameter] of a property (a property in several sets has one per set). <see cref="DeclaringType"/>
/// is the class that declares it, for its documentation comment. <see cref="DefaultValue"/> is the property's
/// initializer as help shows it (e.g. 60, 256MB, Running), or null when the code sets none the metadata shows.
/// <see cref="EnumZero"/>: for an enum, its member of value 0, which the property holds without an initializer (C#
/// emits none for <c>= Enum.ZeroMember</c>).</summary>
public sealed record ParameterInfo(string Name, string Type, string SetName, bool Mandatory, int Position, bool FromPipeline,
    bool FromPipelineByPropertyName, IReadOnlyList<string> Aliases, bool SupportsWildcards, string DeclaringType = "", string? DefaultValue = null,
    string? EnumZero = null)
{
    public const string AllSets = "__AllParameterSets";
}

/// <summary>A cmdlet as its attributes describe it (<see cref="TypeName"/> is the class's full name).</summary>
public sealed record CmdletInfo(string TypeName, string Verb, string Noun, bool SupportsShouldProcess, int ConfirmImpact,
    string? DefaultParameterSetName, IReadOnlyList<string> OutputTypes, IReadOnlyList<ParameterInfo> Parameters)
{
    public string Name => $"{Verb}-{Noun}";
    /// <summary>A parameter in several sets appears once per set; names without duplicates.</summary>
    public IEnumerable<string> ParameterNames => Parameters.Select(p => p.Name).Distinct();
}

/// <summary>
/// Reads the cmdlets of an assembly from its metadata alone (System.Reflection.Metadata): no PowerShell
/// runtime, and no loading of the assembly, whose attribute types live in System.Management.Automation.
/// </summary>
public static class CmdletMetadata
{
    public static IReadOnlyList<CmdletInfo> Read(string assemblyPath)
    {
        using var pe = new PEReader(File.OpenRead(assemblyPath));
        var md = pe.GetMetadataReader();
        var types = new TypeNames(md);
        var enums = new EnumNames(md, Path.GetDirectoryName(Path.GetFullPath(assemblyPath)));
        var cmdlets = new List<CmdletInfo>();
        foreach (var handle in md.TypeDefinitions)
        {
            var type = md.GetTypeDefinition(handle);
            var cmdlet = Attributes(md, type.GetCustomAttributes(), types).Where(a => a.Name == "System.Management.Automation.CmdletAttribute").ToList();
            if (cmdlet.Count == 0) continue;
            var value = cmdlet[0].Value;
            var outputs = Attributes(md, type.GetCustomAttributes(), types)
                .Where(a => a.Name == "System.Management.Automation.OutputTypeAttribute")
                .SelectMany(a => a.Value.FixedArguments.SelectMany(f => f.Value is ImmutableArray<CustomAttributeTypedArgument<string>> arr ? arr.Select(x => (string)x.Value!) : [(string)f.Value!]))
                .ToList();
            var parameters = new List<ParameterInfo>();
            for (TypeDefinition? t = type; t != null; t = BaseOf(md, t.Value))
                parameters.AddRange(Parameters(pe, md, t.Value, types, enums));
            cmdlets.Add(new CmdletInfo($"{md.GetString(type.Namespace)}.{md.GetString(type.Name)}", (string)value.FixedArguments[0].Value!, (string)value.FixedArguments[1].Value!,
                Named(value, "SupportsShouldProcess", false), Named(value, "ConfirmImpact", 2), Named<string?>(value, "DefaultParameterSetName", null), outputs, parameters));
        }
        return cmdlets.OrderBy(c => c.Name, StringComparer.Ordinal).ToList();
    }

    private static TypeDefinition? BaseOf(MetadataReader md, TypeDefinition type) =>
        type.BaseType.Kind == HandleKind.TypeDefinition ? md.GetTypeDefinition((TypeDefinitionHandle)type.BaseType) : null;

    private static IEnumerable<ParameterInfo> Parameters(PEReader pe, MetadataReader md, TypeDefinition type, TypeNames types, EnumNames enums)
    {
        string declaring = $"{md.GetString(type.Namespace)}.{md.GetString(type.Name)}";
        var defaults = Initializers.Read(pe, md, type);
        foreach (var handle in type.GetProperties())
        {
            var property = md.GetPropertyDefinition(handle);
            var attributes = Attributes(md, property.GetCustomAttributes(), types).ToList();
            var aliases = attributes.Where(a => a.Name == "System.Management.Automation.AliasAttribute")
                .SelectMany(a => ((ImmutableArray<CustomAttributeTypedArgument<string>>)a.Value.FixedArguments[0].Value!).Select(x => (string)x.Value!)).ToList();
            bool wildcards = attributes.Any(a => a.Name == "System.Management.Automation.SupportsWildcardsAttribute");
            string propertyType = property.DecodeSignature(types, null).ReturnType;
            string? defaultValue = defaults.TryGetValue(md.GetString(property.Name), out var initial) ? Initializers.Show(enums, initial, propertyType) : null;
            foreach (var p in attributes.Where(a => a.Name == "System.Management.Automation.ParameterAttribute"))
                yield return new ParameterInfo(md.GetString(property.Name), propertyType, Named(p.Value, "ParameterSetName", ParameterInfo.AllSets),
                    Named(p.Value, "Mandatory", false), Named(p.Value, "Position", int.MinValue), Named(p.Value, "ValueFromPipeline", false),
                    Named(p.Value, "ValueFromPipelineByPropertyName", false), aliases, wildcards, declaring, defaultValue, enums.Name(propertyType, 0));
        }
    }

    private static T Named<T>(CustomAttributeValue<string> value, string name, T fallback)
    {
        foreach (var n in value.NamedArguments) if (n.Name == name) return (T)n.Value!;
        return fallback;
    }

    private static IEnumerable<(string Name, CustomAttributeValue<string> Value)> Attributes(MetadataReader md, CustomAttributeHandleCollection handles, TypeNames types)
    {
        foreach (var handle in handles)
        {
            var attribute = md.GetCustomAttribute(handle);
            string name = attribute.Constructor.Kind switch
            {
                HandleKind.MemberReference => types.Name(md.GetMemberReference((MemberReferenceHandle)attribute.Constructor).Parent),
                HandleKind.MethodDefinition => types.Name(md.GetMethodDefinition((MethodDefinitionHandle)attribute.Constructor).GetDeclaringType()),
                _ => "",
            };
            if (!name.StartsWith("System.Management.Automation.", StringComparison.Ordinal)) continue;
            yield return (name, attribute.DecodeValue(types));
        }
    }

    /// <summary>Types as their full names; enums (ConfirmImpact, the only one our attributes use) as Int32.</summary>
    private sealed class TypeNames(MetadataReader md) : ICustomAttributeTypeProvider<string>, ISignatureTypeProvider<string, object?>
    {
        public string Name(EntityHandle handle) => handle.Kind switch
        {
            HandleKind.TypeReference => GetTypeFromReference(md, (TypeReferenceHandle)handle, 0),
            HandleKind.TypeDefinition => GetTypeFromDefinition(md, (TypeDefinitionHandle)handle, 0),
            _ => "",
        };
        public string GetPrimitiveType(PrimitiveTypeCode typeCode) => typeCode switch
        {
            PrimitiveTypeCode.Boolean => "System.Boolean", PrimitiveTypeCode.Int32 => "System.Int32", PrimitiveTypeCode.Int64 => "System.Int64",
            PrimitiveTypeCode.String => "System.String", PrimitiveTypeCode.Void => "System.Void", _ => "System." + typeCode,
        };
        public string GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind)
        {
            var t = reader.GetTypeDefinition(handle);
            string name = reader.GetString(t.Name);
            return t.IsNested ? GetTypeFromDefinition(reader, t.GetDeclaringType(), 0) + "+" + name : $"{reader.GetString(t.Namespace)}.{name}";
        }
        public string GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind)
        {
            var t = reader.GetTypeReference(handle);
            return $"{reader.GetString(t.Namespace)}.{reader.GetString(t.Name)}";
        }
        public string GetTypeFromSerializedName(string name) => name.Split(',')[0];
        public PrimitiveTypeCode GetUnderlyingEnumType(string type) => PrimitiveTypeCode.Int32;
        public string GetSystemType() => "System.Type";
        public bool IsSystemType(string type) => type == "System.Type";
        public string GetSZArrayType(string elementType) => elementType + "[]";
        public string GetGenericInstantiation(string genericType, ImmutableArray<string> typeArguments) => $"{genericType}<{string.Join(",", typeArguments)}>";
        public string GetArrayType(string elementType, ArrayShape shape) => elementType + "[*]";
        public string GetByReferenceType(string elementType) => elementType + "&";
        public string GetPointerType(string elementType) => elementType + "*";
        public string GetFunctionPointerType(MethodSignature<string> signature) => "fnptr";
        public string GetGenericMethodParameter(object? genericContext, int index) => "!!" + index;
        public string GetGenericTypeParameter(object? genericContext, int index) => "!" + index;
        public string GetModifiedType(string modifier, string unmodifiedType, bool isRequired) => unmodifiedType;
        public string GetPinnedType(string elementType) => elementType;
        public string GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) =>
            reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);
    }
}
