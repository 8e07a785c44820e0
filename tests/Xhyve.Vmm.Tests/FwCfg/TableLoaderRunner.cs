using System.Buffers.Binary;
using System.Text;

namespace Xhyve.Vmm.Tests.FwCfg;

/// <summary>
/// Executes an etc/table-loader script the way SeaBIOS's romfile loader does (written here from the command
/// format alone): each ALLOCATE copies a file to the next free, aligned address of its zone, ADD_POINTER adds
/// the source file's address to a little-endian field, ADD_CHECKSUM subtracts the range's sum from the result byte.
/// </summary>
internal sealed class TableLoaderRunner
{
    public Dictionary<string, (ulong Address, byte[] Data)> Loaded { get; } = new();
    public List<string> Log { get; } = new();

    public static TableLoaderRunner Run(byte[] script, Func<string, byte[]> file, ulong highBase, ulong fsegBase)
    {
        Assert.Equal(0, script.Length % 128);
        var r = new TableLoaderRunner();
        ulong high = highBase, fseg = fsegBase;
        for (int at = 0; at < script.Length; at += 128)
        {
            var c = script.AsSpan(at, 128);
            int commandAt = at;
            uint kind = BinaryPrimitives.ReadUInt32LittleEndian(c);
            string Name(int offset) => Encoding.ASCII.GetString(script, commandAt + offset, 56).TrimEnd('\0');
            switch (kind)
            {
                case 1:
                {
                    string name = Name(4);
                    uint align = BinaryPrimitives.ReadUInt32LittleEndian(c[60..]);
                    byte zone = c[64];
                    Assert.True(align != 0 && (align & (align - 1)) == 0, $"alignment {align} of {name}");
                    ref ulong next = ref (zone == 1 ? ref high : ref fseg);
                    Assert.True(zone is 1 or 2, $"zone {zone}");
                    ulong address = (next + align - 1) & ~(ulong)(align - 1);
                    var data = (byte[])file(name).Clone();
                    r.Loaded.Add(name, (address, data));
                    next = address + (ulong)data.Length;
                    r.Log.Add($"allocate {name}");
                    break;
                }
                case 2:
                {
                    var (_, dest) = r.Loaded[Name(4)];
                    var (srcAddress, src) = r.Loaded[Name(60)];
                    uint offset = BinaryPrimitives.ReadUInt32LittleEndian(c[116..]);
                    byte size = c[120];
                    Assert.True(offset + size <= dest.Length, "pointer inside its file");
                    var field = dest.AsSpan((int)offset, size);
                    ulong value = size switch
                    {
                        4 => BinaryPrimitives.ReadUInt32LittleEndian(field),
                        8 => BinaryPrimitives.ReadUInt64LittleEndian(field),
                        _ => throw new InvalidOperationException($"pointer size {size}"),
                    };
                    Assert.True(value < (ulong)src.Length, $"pointer {Name(4)}+{offset} = {value} lies inside {Name(60)}");
                    value += srcAddress;
                    if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(field, (uint)value);
                    else BinaryPrimitives.WriteUInt64LittleEndian(field, value);
                    r.Log.Add($"pointer {Name(4)}+{offset}");
                    break;
                }
                case 3:
                {
                    var (_, data) = r.Loaded[Name(4)];
                    uint result = BinaryPrimitives.ReadUInt32LittleEndian(c[60..]);
                    uint start = BinaryPrimitives.ReadUInt32LittleEndian(c[64..]);
                    uint length = BinaryPrimitives.ReadUInt32LittleEndian(c[68..]);
                    Assert.True(start + length <= data.Length && result < data.Length, "checksum range inside its file");
                    byte sum = 0;
                    foreach (var b in data.AsSpan((int)start, (int)length)) sum += b;
                    data[result] -= sum;
                    r.Log.Add($"checksum {Name(4)}+{result}");
                    break;
                }
                default: throw new InvalidOperationException($"unknown loader command {kind}");
            }
        }
        return r;
    }

    /// <summary>Bytes at a guest address, from whichever loaded file holds them.</summary>
    public byte[] At(ulong address, int length)
    {
        foreach (var (a, data) in Loaded.Values)
            if (address >= a && address + (ulong)length <= a + (ulong)data.Length)
                return data.AsSpan((int)(address - a), length).ToArray();
        throw new InvalidOperationException($"0x{address:X}+{length} is in no loaded file");
    }
}
