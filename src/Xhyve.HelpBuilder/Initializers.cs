using System.Globalization;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace Xhyve.HelpBuilder;

/// <summary>
/// The constant initial values a class's auto-properties get (<c>public int TimeoutSec { get; set; } = 60;</c>),
/// read from its constructor's IL: C# runs property initializers first, as stores of constants into the backing
/// fields before the base constructor call. Only constants are read (numbers, strings, arrays of them,
/// <c>[]</c>); the first instruction of any other kind ends the scan, so a value computed at run time is
/// never reported as a default.
/// </summary>
public static class Initializers
{
    /// <summary>A value the scan cannot know (a field, a call's result).</summary>
    private static readonly object Unknown = new();
    private static readonly object This = new();

    /// <summary>Property name to initial value: long, double, string, null, or object?[] of those.</summary>
    public static Dictionary<string, object?> Read(PEReader pe, MetadataReader md, TypeDefinition type)
    {
        var values = new Dictionary<string, object?>();
        foreach (var handle in type.GetMethods())
        {
            var method = md.GetMethodDefinition(handle);
            if (md.GetString(method.Name) != ".ctor" || method.RelativeVirtualAddress == 0) continue;
            if (method.DecodeSignature(new ArityProvider(), null).ParameterTypes.Length != 0) continue;
            Scan(md, pe.GetMethodBody(method.RelativeVirtualAddress).GetILReader(), values);
        }
        return values;
    }

    private static void Scan(MetadataReader md, BlobReader il, Dictionary<string, object?> values)
    {
        var stack = new Stack<object?>();
        while (il.RemainingBytes > 0)
        {
            byte op = il.ReadByte();
            switch (op)
            {
                case 0x00: break;                                             // nop
                case 0x02: stack.Push(This); break;                           // ldarg.0
                case 0x14: stack.Push(null); break;                           // ldnull
                case >= 0x15 and <= 0x1E: stack.Push((long)(op - 0x16)); break; // ldc.i4.m1 .. ldc.i4.8
                case 0x1F: stack.Push((long)il.ReadSByte()); break;           // ldc.i4.s
                case 0x20: stack.Push((long)il.ReadInt32()); break;           // ldc.i4
                case 0x21: stack.Push(il.ReadInt64()); break;                 // ldc.i8
                case 0x22: stack.Push((double)il.ReadSingle()); break;        // ldc.r4
                case 0x23: stack.Push(il.ReadDouble()); break;                // ldc.r8
                case 0x25: stack.Push(stack.Peek()); break;                   // dup
                case 0x69 or 0x6A or 0x6E: break;                             // conv.i4, conv.i8, conv.u8: a long stays one (ldc.i4 + conv.i8 is how C# loads a small long)
                case 0x7E: il.ReadInt32(); stack.Push(Unknown); break;        // ldsfld: a static readonly value, not a constant
                case 0x72:                                                    // ldstr
                    stack.Push(md.GetUserString(MetadataTokens.UserStringHandle(il.ReadInt32() & 0xFFFFFF)));
                    break;
                case 0x8D:                                                    // newarr
                    il.ReadInt32();
                    stack.Push(stack.Pop() is long n and >= 0 and < 1024 ? new object?[n] : Unknown);
                    break;
                case 0xA2 or 0x9E or 0xA4:                                    // stelem.ref, stelem.i4, stelem T
                    if (op == 0xA4) il.ReadInt32();
                    object? element = stack.Pop(), index = stack.Pop(), array = stack.Pop();
                    if (array is object?[] items && index is long i && i < items.Length) items[i] = element;
                    break;
                case 0x28:                                                    // call: Array.Empty<T>() is [], the base constructor ends the initializers
                    int token = il.ReadInt32();
                    string callee = CalleeName(md, token);
                    if (callee == ".ctor") return;
                    if (callee == "Empty") { stack.Push(Array.Empty<object?>()); break; }
                    if (Arity(md, token) is not (int arguments, bool returns) || stack.Count < arguments) return;
                    for (int a = 0; a < arguments; a++) stack.Pop();
                    if (returns) stack.Push(Unknown);                         // what a method returns is not a constant
                    break;
                case 0x7D:                                                    // stfld
                    var field = md.GetFieldDefinition((FieldDefinitionHandle)MetadataTokens.EntityHandle(il.ReadInt32()));
                    object? value = stack.Pop(), target = stack.Pop();
                    string name = md.GetString(field.Name);
                    if (target == This && value != Unknown && !ContainsUnknown(value) && name.StartsWith('<') && name.EndsWith(">k__BackingField", StringComparison.Ordinal))
                        values[name[1..name.IndexOf('>')]] = value;
                    break;
                default: return;
            }
        }
    }

    /// <summary>How many values a call takes off the stack (its parameters and, for an instance method, the target) and whether it leaves one.</summary>
    private static (int Arguments, bool Returns)? Arity(MetadataReader md, int token)
    {
        var handle = MetadataTokens.EntityHandle(token);
        if (handle.Kind == HandleKind.MethodSpecification) handle = md.GetMethodSpecification((MethodSpecificationHandle)handle).Method;
        MethodSignature<int> signature;
        if (handle.Kind == HandleKind.MemberReference) signature = md.GetMemberReference((MemberReferenceHandle)handle).DecodeMethodSignature(new ArityProvider(), null);
        else if (handle.Kind == HandleKind.MethodDefinition) signature = md.GetMethodDefinition((MethodDefinitionHandle)handle).DecodeSignature(new ArityProvider(), null);
        else return null;
        return (signature.ParameterTypes.Length + (signature.Header.IsInstance ? 1 : 0), signature.ReturnType != ArityProvider.Void);
    }

    private static bool ContainsUnknown(object? value) => value is object?[] items && items.Any(x => x == Unknown || ContainsUnknown(x));

    private static string CalleeName(MetadataReader md, int token)
    {
        var handle = MetadataTokens.EntityHandle(token);
        if (handle.Kind == HandleKind.MethodSpecification) handle = md.GetMethodSpecification((MethodSpecificationHandle)handle).Method;
        return handle.Kind switch
        {
            HandleKind.MemberReference => md.GetString(md.GetMemberReference((MemberReferenceHandle)handle).Name),
            HandleKind.MethodDefinition => md.GetString(md.GetMethodDefinition((MethodDefinitionHandle)handle).Name),
            _ => "",
        };
    }

    /// <summary>The value as help's "Default value:" shows it: an enum by its member's name, sizes of whole MB as
    /// PowerShell writes them (256MB), arrays comma separated; null, "" and empty arrays are None (null).</summary>
    public static string? Show(EnumNames enums, object? value, string type) => value switch
    {
        null => null,
        object?[] { Length: 0 } => null,
        object?[] items => string.Join(", ", items.Select(x => Show(enums, x, type.TrimEnd('[', ']')) ?? "$null")),
        long n when enums.Name(type, n) is string member => member,
        long n when n >= 1 << 20 && n % (1 << 20) == 0 => n % (1L << 30) == 0 ? $"{n >> 30}GB" : $"{n >> 20}MB",
        long n => n.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString(CultureInfo.InvariantCulture),
        string { Length: 0 } => null,
        string s => s,
        _ => null,
    };

    /// <summary>Decodes just enough of a signature to count its parameters.</summary>
    private sealed class ArityProvider : ISignatureTypeProvider<int, object?>
    {
        public const int Void = -1;
        public int GetArrayType(int elementType, ArrayShape shape) => 0;
        public int GetByReferenceType(int elementType) => 0;
        public int GetFunctionPointerType(MethodSignature<int> signature) => 0;
        public int GetGenericInstantiation(int genericType, System.Collections.Immutable.ImmutableArray<int> typeArguments) => 0;
        public int GetGenericMethodParameter(object? genericContext, int index) => 0;
        public int GetGenericTypeParameter(object? genericContext, int index) => 0;
        public int GetModifiedType(int modifier, int unmodifiedType, bool isRequired) => 0;
        public int GetPinnedType(int elementType) => 0;
        public int GetPointerType(int elementType) => 0;
        public int GetPrimitiveType(PrimitiveTypeCode typeCode) => typeCode == PrimitiveTypeCode.Void ? Void : 0;
        public int GetSZArrayType(int elementType) => 0;
        public int GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => 0;
        public int GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => 0;
        public int GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) => 0;
    }
}

/// <summary>Enum members by value, for the enums of the cmdlet assembly and of the assemblies beside it (a
/// parameter's enum may live in a library, e.g. Xhyve.Vmm's NetBackendKind).</summary>
public sealed class EnumNames(MetadataReader md, string? directory)
{
    private Dictionary<string, Dictionary<long, string>>? _all;

    public string? Name(string type, long value)
    {
        _all ??= Load();
        return _all.TryGetValue(type, out var members) && members.TryGetValue(value, out var name) ? name : null;
    }

    private Dictionary<string, Dictionary<long, string>> Load()
    {
        var all = new Dictionary<string, Dictionary<long, string>>();
        Add(md, all);
        if (directory == null || !Directory.Exists(directory)) return all;
        foreach (var file in Directory.GetFiles(directory, "*.dll"))
        {
            try
            {
                using var pe = new PEReader(File.OpenRead(file));
                if (pe.HasMetadata) Add(pe.GetMetadataReader(), all);
            }
            catch (BadImageFormatException) { }   // a native library beside the assemblies
        }
        return all;
    }

    private static void Add(MetadataReader md, Dictionary<string, Dictionary<long, string>> all)
    {
        foreach (var handle in md.TypeDefinitions)
        {
            var t = md.GetTypeDefinition(handle);
            if (t.BaseType.Kind != HandleKind.TypeReference) continue;
            var baseType = md.GetTypeReference((TypeReferenceHandle)t.BaseType);
            if (md.GetString(baseType.Namespace) != "System" || md.GetString(baseType.Name) != "Enum") continue;
            string name = $"{md.GetString(t.Namespace)}.{md.GetString(t.Name)}";
            if (all.ContainsKey(name) || t.IsNested) continue;
            var members = new Dictionary<long, string>();
            foreach (var f in t.GetFields())
            {
                var field = md.GetFieldDefinition(f);
                if (field.GetDefaultValue().IsNil) continue;
                var reader = md.GetBlobReader(md.GetConstant(field.GetDefaultValue()).Value);
                long v = reader.Length switch { 1 => reader.ReadSByte(), 2 => reader.ReadInt16(), 4 => reader.ReadInt32(), _ => reader.ReadInt64() };
                members.TryAdd(v, md.GetString(field.Name));
            }
            all[name] = members;
        }
    }
}
