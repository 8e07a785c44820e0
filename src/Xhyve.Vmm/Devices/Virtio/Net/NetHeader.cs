using System.Buffers.Binary;

namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>virtio-net feature bits and status values (virtio 1.2 §5.1.3, §5.1.4).</summary>
public static class NetFeatures
{
    public const ulong Csum = 1UL << 0, GuestCsum = 1UL << 1, Mac = 1UL << 5, GuestTso4 = 1UL << 7, GuestTso6 = 1UL << 8,
        GuestEcn = 1UL << 9, HostTso4 = 1UL << 11, HostTso6 = 1UL << 12, HostEcn = 1UL << 13, MrgRxbuf = 1UL << 15,
        Status = 1UL << 16, CtrlVq = 1UL << 17, CtrlRx = 1UL << 18, CtrlMacAddr = 1UL << 23;
    /// <summary>The guest-receive offloads a TAP takes (TUNSETOFFLOAD), and the guest-send ones it accepts in a header.</summary>
    public const ulong TapOffloads = Csum | GuestCsum | GuestTso4 | GuestTso6 | GuestEcn | HostTso4 | HostTso6 | HostEcn;
    public const ushort StatusLinkUp = 1;
}

/// <summary>The two parts of a frame the device moves: a virtio_net_hdr and the Ethernet frame after it.</summary>
public static class EthernetFrame
{
    public const int HeaderSize = 14, MinimumSize = 14;
    /// <summary>The largest frame either backend moves: a 64 KiB IP packet (TSO, or passt's 65520 MTU) plus Ethernet and VLAN headers.</summary>
    public const int MaximumSize = 65535 + HeaderSize + 4;
}

/// <summary>
/// struct virtio_net_hdr (virtio 1.2 §5.1.6): 10 bytes, 12 with num_buffers (VERSION_1 or MRG_RXBUF). Parsed from
/// a copy of guest memory by <see cref="Read"/> and checked by <see cref="Check"/> against the frame it describes.
/// </summary>
public readonly record struct NetHeader(byte Flags, byte GsoType, ushort HdrLen, ushort GsoSize, ushort CsumStart, ushort CsumOffset, ushort NumBuffers)
{
    public const int LegacySize = 10, Size = 12;
    public const byte FlagNeedsCsum = 1, FlagDataValid = 2;
    public const byte GsoNone = 0, GsoTcpV4 = 1, GsoUdp = 3, GsoTcpV6 = 4, GsoEcn = 0x80;

    public bool NeedsChecksum => (Flags & FlagNeedsCsum) != 0;
    public byte GsoKind => (byte)(GsoType & ~GsoEcn);

    public static NetHeader Read(ReadOnlySpan<byte> b) => new(b[0], b[1],
        BinaryPrimitives.ReadUInt16LittleEndian(b[2..]), BinaryPrimitives.ReadUInt16LittleEndian(b[4..]),
        BinaryPrimitives.ReadUInt16LittleEndian(b[6..]), BinaryPrimitives.ReadUInt16LittleEndian(b[8..]),
        b.Length >= Size ? BinaryPrimitives.ReadUInt16LittleEndian(b[10..]) : (ushort)0);

    /// <summary>Writes the header in <paramref name="b"/>'s length (10 or 12 bytes).</summary>
    public void Write(Span<byte> b)
    {
        b[0] = Flags; b[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], HdrLen);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], CsumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(b[8..], CsumOffset);
        if (b.Length >= Size) BinaryPrimitives.WriteUInt16LittleEndian(b[10..], NumBuffers);
    }

    /// <summary>
    /// Checks a header the guest sent with a frame of <paramref name="frameLength"/> bytes against the features it
    /// negotiated: flags and GSO types it may use, a checksum position inside the frame, a segment size for GSO.
    /// </summary>
    public static TxHeaderError Check(in NetHeader h, int frameLength, ulong negotiated)
    {
        if ((h.Flags & ~(FlagNeedsCsum | FlagDataValid)) != 0) return TxHeaderError.UnknownFlags;
        if (h.NeedsChecksum)
        {
            if ((negotiated & NetFeatures.Csum) == 0) return TxHeaderError.OffloadNotNegotiated;
            // The 16-bit checksum field must lie inside the frame, after the part it covers starts.
            if (h.CsumStart + h.CsumOffset + 2 > frameLength) return TxHeaderError.ChecksumOutsideFrame;
        }
        if (h.GsoKind == GsoNone)
        {
            if ((h.GsoType & GsoEcn) != 0) return TxHeaderError.BadGso;
            return TxHeaderError.None;
        }
        ulong needed = h.GsoKind switch { GsoTcpV4 => NetFeatures.HostTso4, GsoTcpV6 => NetFeatures.HostTso6, _ => 0 };
        if (needed == 0) return TxHeaderError.BadGso;
        if ((negotiated & needed) == 0 || ((h.GsoType & GsoEcn) != 0 && (negotiated & NetFeatures.HostEcn) == 0)) return TxHeaderError.OffloadNotNegotiated;
        // Segmentation needs a checksum to fill in for every segment and a segment size.
        if (!h.NeedsChecksum || h.GsoSize == 0) return TxHeaderError.BadGso;
        return TxHeaderError.None;
    }

    /// <summary>
    /// NEEDS_CSUM done by the device for a backend that cannot take the header (passt): the Internet checksum of
    /// frame[CsumStart..], folded and stored at CsumStart + CsumOffset, as the driver asked (its partial sum over
    /// the pseudo-header is already in that field). Bounds were checked by <see cref="Check"/>.
    /// </summary>
    public static void CompleteChecksum(Span<byte> frame, int csumStart, int csumOffset)
    {
        var covered = frame[csumStart..];
        ulong sum = 0;
        int i = 0;
        for (; i + 8 <= covered.Length; i += 8)
        {
            ulong w = BinaryPrimitives.ReadUInt64BigEndian(covered[i..]);
            sum += (w >> 48) + ((w >> 32) & 0xFFFF) + ((w >> 16) & 0xFFFF) + (w & 0xFFFF);
        }
        for (; i + 2 <= covered.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(covered[i..]);
        if (i < covered.Length) sum += (ulong)covered[i] << 8;
        while ((sum >> 16) != 0) sum = (sum & 0xFFFF) + (sum >> 16);
        ushort result = (ushort)~sum;
        // UDP transmits a zero checksum as all ones (RFC 768); for TCP the two are the same value.
        if (result == 0) result = 0xFFFF;
        BinaryPrimitives.WriteUInt16BigEndian(frame[(csumStart + csumOffset)..], result);
    }
}

/// <summary>Why a frame the guest sent was dropped (each counted under its own name).</summary>
public enum TxHeaderError
{
    None,
    /// <summary>Header flags outside NEEDS_CSUM and DATA_VALID.</summary>
    UnknownFlags,
    /// <summary>A checksum or segmentation offload the driver did not negotiate.</summary>
    OffloadNotNegotiated,
    /// <summary>csum_start + csum_offset puts the checksum field beyond the frame.</summary>
    ChecksumOutsideFrame,
    /// <summary>An unknown GSO type, ECN without a type, or GSO without a checksum request or segment size.</summary>
    BadGso,
}
