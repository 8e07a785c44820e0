using System.Buffers.Binary;
using System.Text;

namespace Xhyve.Vmm.Devices.FwCfg;

/// <summary>One entry of the fw_cfg file directory (item 0x0019).</summary>
public readonly record struct FwCfgFile(string Name, ushort Selector, long Size);

/// <summary>
/// The items a <see cref="FwCfgDevice"/> serves: numbered items below 0x20 and named files, which get selectors
/// from 0x20 in name order (the order the directory lists them, as QEMU does). Owns the file handles items read from.
/// </summary>
public sealed class FwCfgItems : IDisposable
{
    private readonly Dictionary<ushort, FwCfgItem> _numbered = new();
    private readonly SortedDictionary<string, FwCfgItem> _files = new(StringComparer.Ordinal);
    private readonly List<IDisposable> _owned = new();

    /// <summary>Adds (or replaces) a numbered item; selectors from 0x20 are the files' and 0x19 is the directory.</summary>
    public FwCfgItems Add(ushort selector, FwCfgItem item)
    {
        if (selector >= FwCfgSelectors.FirstFile || selector == FwCfgSelectors.FileDirectory)
            throw new ArgumentOutOfRangeException(nameof(selector), $"0x{selector:X4} is not a numbered item's selector");
        _numbered[selector] = item;
        return this;
    }

    public FwCfgItems Add(ushort selector, byte[] bytes) => Add(selector, FwCfgItem.FromBytes(bytes));

    public FwCfgItems AddU16(ushort selector, ushort value) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, value); return Add(selector, b); }
    public FwCfgItems AddU32(ushort selector, uint value) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, value); return Add(selector, b); }
    public FwCfgItems AddU64(ushort selector, ulong value) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, value); return Add(selector, b); }

    /// <summary>Adds a named file. Names are ASCII of at most 55 characters (the directory's field holds 56 with the NUL).</summary>
    public FwCfgItems AddFile(string name, FwCfgItem item)
    {
        if (name.Length == 0 || name.Length >= FwCfgSelectors.MaxFileName || name.Any(c => c is < ' ' or > '~'))
            throw new ArgumentException($"fw_cfg file name '{name}' must be 1-{FwCfgSelectors.MaxFileName - 1} printable ASCII characters", nameof(name));
        if (!_files.TryAdd(name, item)) throw new ArgumentException($"fw_cfg file '{name}' is already present", nameof(name));
        if (FwCfgSelectors.FirstFile + _files.Count > FwCfgSelectors.WriteChannelBit)
            throw new InvalidOperationException("too many fw_cfg files");
        return this;
    }

    public FwCfgItems AddFile(string name, byte[] bytes) => AddFile(name, FwCfgItem.FromBytes(bytes));

    /// <summary>Disposes <paramref name="resource"/> (e.g. the handle a file-backed item reads) with these items.</summary>
    public void Own(IDisposable resource) => _owned.Add(resource);

    /// <summary>The directory's entries: sorted by name, selectors from 0x20.</summary>
    public IReadOnlyList<FwCfgFile> Files =>
        _files.Select((f, i) => new FwCfgFile(f.Key, (ushort)(FwCfgSelectors.FirstFile + i), f.Value.Length)).ToArray();

    public bool HasFile(string name) => _files.ContainsKey(name);

    /// <summary>Item 0x0019: a big-endian count, then per file {be32 size, be16 select, be16 reserved, char name[56]}.</summary>
    public byte[] Directory()
    {
        var files = Files;
        var b = new byte[4 + files.Count * 64];
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)files.Count);
        for (int i = 0; i < files.Count; i++)
        {
            var entry = b.AsSpan(4 + i * 64, 64);
            BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)Math.Min(files[i].Size, uint.MaxValue));
            BinaryPrimitives.WriteUInt16BigEndian(entry[4..], files[i].Selector);
            Encoding.ASCII.GetBytes(files[i].Name).CopyTo(entry[8..]);
        }
        return b;
    }

    /// <summary>Every item by selector (numbered, directory, files), for the device's allocation-free lookup.</summary>
    internal FwCfgItem?[] ToTable()
    {
        var table = new FwCfgItem?[FwCfgSelectors.FirstFile + _files.Count];
        foreach (var (selector, item) in _numbered) table[selector] = item;
        table[FwCfgSelectors.FileDirectory] = FwCfgItem.FromBytes(Directory());
        int i = 0;
        foreach (var item in _files.Values) table[FwCfgSelectors.FirstFile + i++] = item;
        return table;
    }

    public void Dispose()
    {
        foreach (var r in _owned) r.Dispose();
        _owned.Clear();
    }
}
