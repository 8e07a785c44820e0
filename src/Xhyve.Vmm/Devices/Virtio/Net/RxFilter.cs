using System.Buffers.Binary;

namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>Control-queue classes and commands (virtio 1.2 §5.1.6.5).</summary>
public static class NetControl
{
    public const byte ClassRx = 0, ClassMac = 1, ClassAnnounce = 3;
    public const byte RxPromisc = 0, RxAllMulti = 1, RxAllUni = 2, RxNoMulti = 3, RxNoUni = 4, RxNoBroadcast = 5;
    public const byte MacTableSet = 0, MacAddrSet = 1;
    public const byte AnnounceAck = 0;
    public const byte Ok = 0, Error = 1;
}

/// <summary>
/// Which received frames the guest wants (VIRTIO_NET_F_CTRL_RX, §5.1.6.5.1-2): promiscuous, all-multicast and
/// no-broadcast modes and the driver's unicast and multicast MAC tables. Until the driver says otherwise every
/// frame is accepted (promiscuous), as a driver without the control queue expects. Tables are capped; a driver
/// that gives more entries than fit gets the whole class accepted instead, never a lost frame.
/// </summary>
public sealed class RxFilter
{
    public const int TableEntries = 64;
    private readonly ulong[] _unicast = new ulong[TableEntries], _multicast = new ulong[TableEntries];
    private int _unicastCount, _multicastCount;
    private bool _unicastOverflow, _multicastOverflow;

    public bool Promiscuous { get; private set; } = true;
    public bool AllMulticast { get; private set; }
    public bool AllUnicast { get; private set; }
    public bool NoMulticast { get; private set; }
    public bool NoUnicast { get; private set; }
    public bool NoBroadcast { get; private set; }

    public void Reset()
    {
        Promiscuous = true;
        AllMulticast = AllUnicast = NoMulticast = NoUnicast = NoBroadcast = false;
        _unicastCount = _multicastCount = 0;
        _unicastOverflow = _multicastOverflow = false;
    }

    /// <summary>Whether a frame for <paramref name="destination"/> goes to a guest whose own address is <paramref name="own"/>.</summary>
    public bool Accepts(ReadOnlySpan<byte> destination, ulong own)
    {
        if (Promiscuous) return true;
        ulong d = Mac(destination);
        if (d == 0xFFFF_FFFF_FFFF) return !NoBroadcast;
        if ((destination[0] & 1) != 0)
            return !NoMulticast && (AllMulticast || _multicastOverflow || Contains(_multicast, _multicastCount, d));
        if (d == own) return true;
        return !NoUnicast && (AllUnicast || _unicastOverflow || Contains(_unicast, _unicastCount, d));
    }

    /// <summary>VIRTIO_NET_CTRL_RX: <paramref name="data"/> is one byte, on (1) or off (0).</summary>
    public bool SetMode(byte command, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1 || data[0] > 1) return false;
        bool on = data[0] == 1;
        switch (command)
        {
            case NetControl.RxPromisc: Promiscuous = on; break;
            case NetControl.RxAllMulti: AllMulticast = on; break;
            case NetControl.RxAllUni: AllUnicast = on; break;
            case NetControl.RxNoMulti: NoMulticast = on; break;
            case NetControl.RxNoUni: NoUnicast = on; break;
            case NetControl.RxNoBroadcast: NoBroadcast = on; break;
            default: return false;
        }
        return true;
    }

    /// <summary>VIRTIO_NET_CTRL_MAC_TABLE_SET: two tables, each a le32 count and that many 6-byte addresses, and
    /// nothing after them. A malformed command changes nothing.</summary>
    public bool SetTables(ReadOnlySpan<byte> data)
    {
        if (!TryTable(data, out uint uni, out var uniBytes) || !TryTable(data[(4 + uniBytes.Length)..], out uint multi, out var multiBytes)
            || 8 + uniBytes.Length + multiBytes.Length != data.Length)
            return false;
        (_unicastCount, _unicastOverflow) = Fill(_unicast, uni, uniBytes);
        (_multicastCount, _multicastOverflow) = Fill(_multicast, multi, multiBytes);
        return true;
    }

    private static bool TryTable(ReadOnlySpan<byte> data, out uint count, out ReadOnlySpan<byte> entries)
    {
        entries = default; count = 0;
        if (data.Length < 4) return false;
        count = BinaryPrimitives.ReadUInt32LittleEndian(data);
        // Checked in 64 bits: a count near 2^32 must not wrap into a small length.
        if ((ulong)count * 6 > (ulong)(data.Length - 4)) return false;
        entries = data.Slice(4, (int)count * 6);
        return true;
    }

    private static (int Count, bool Overflow) Fill(ulong[] table, uint count, ReadOnlySpan<byte> entries)
    {
        if (count > table.Length) return (0, true);
        for (int i = 0; i < count; i++) table[i] = Mac(entries.Slice(i * 6, 6));
        return ((int)count, false);
    }

    private static bool Contains(ulong[] table, int count, ulong mac)
    {
        for (int i = 0; i < count; i++) if (table[i] == mac) return true;
        return false;
    }

    public static ulong Mac(ReadOnlySpan<byte> b) =>
        (ulong)b[0] << 40 | (ulong)b[1] << 32 | (ulong)b[2] << 24 | (ulong)b[3] << 16 | (ulong)b[4] << 8 | b[5];
}
