using System.Buffers.Binary;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>
/// Real Ethernet/IPv4 frames for the net tests, and an Internet checksum written independently of the device's
/// (a byte-pair loop, no wide words): what a checksum offload test compares against.
/// </summary>
internal static class NetPackets
{
    public static readonly byte[] GuestMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    public static readonly byte[] HostMac = [0x52, 0x54, 0x00, 0xAA, 0xBB, 0xCC];
    public static readonly byte[] Broadcast = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    public const int EthernetHeader = 14, Ipv4Header = 20, UdpHeader = 8, TcpHeader = 20;
    public const int UdpChecksumOffset = 6, TcpChecksumOffset = 16;
    public const byte Udp = 17, Tcp = 6;
    private static readonly byte[] Source = [10, 0, 2, 15], Destination = [93, 184, 216, 34];

    /// <summary>An Ethernet frame of <paramref name="length"/> bytes to <paramref name="destination"/> with a
    /// payload pattern that depends on <paramref name="seed"/> (so frames can be told apart).</summary>
    public static byte[] Frame(int length, byte[]? destination = null, int seed = 0)
    {
        var f = new byte[length];
        (destination ?? GuestMac).CopyTo(f, 0);
        HostMac.CopyTo(f, 6);
        f[12] = 0x88; f[13] = 0xB5;   // local experimental ethertype
        for (int i = EthernetHeader; i < length; i++) f[i] = unchecked((byte)(i * 7 + seed * 31 + 1));
        return f;
    }

    /// <summary>An IPv4 frame carrying a UDP or TCP segment whose checksum field holds the folded pseudo-header sum,
    /// as Linux leaves it for CHECKSUM_PARTIAL; csum_start and csum_offset are what its virtio_net_hdr says.</summary>
    public static (byte[] Frame, int CsumStart, int CsumOffset) PartialChecksumFrame(byte protocol, int payloadLength, int seed = 0)
    {
        int l4Header = protocol == Udp ? UdpHeader : TcpHeader;
        int segment = l4Header + payloadLength;
        var f = new byte[EthernetHeader + Ipv4Header + segment];
        HostMac.CopyTo(f, 0);
        GuestMac.CopyTo(f, 6);
        f[12] = 0x08; f[13] = 0x00;
        var ip = f.AsSpan(EthernetHeader, Ipv4Header);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(Ipv4Header + segment));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
        ip[6] = 0x40;   // don't fragment
        ip[8] = 64;
        ip[9] = protocol;
        Source.CopyTo(ip[12..]);
        Destination.CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~Sum(ip));
        var l4 = f.AsSpan(EthernetHeader + Ipv4Header);
        BinaryPrimitives.WriteUInt16BigEndian(l4, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(l4[2..], protocol == Udp ? (ushort)53 : (ushort)443);
        if (protocol == Udp) BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)segment);
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(l4[4..], 0x01020304);
            BinaryPrimitives.WriteUInt32BigEndian(l4[8..], 0xA0B0C0D0);
            l4[12] = 0x50; l4[13] = 0x18;
            BinaryPrimitives.WriteUInt16BigEndian(l4[14..], 0xFAF0);
        }
        var rng = new Random(seed);
        rng.NextBytes(l4[l4Header..]);
        int csumOffset = protocol == Udp ? UdpChecksumOffset : TcpChecksumOffset;
        // ~csum_tcpudp_magic(saddr, daddr, len, proto, 0): the pseudo-header sum, folded, not inverted.
        BinaryPrimitives.WriteUInt16BigEndian(l4[csumOffset..], (ushort)Sum(PseudoHeader(protocol, segment)));
        return (f, EthernetHeader + Ipv4Header, csumOffset);
    }

    public static byte[] PseudoHeader(byte protocol, int segmentLength)
    {
        var p = new byte[12];
        Source.CopyTo(p, 0);
        Destination.CopyTo(p, 4);
        p[9] = protocol;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(10), (ushort)segmentLength);
        return p;
    }

    /// <summary>Whether the IPv4 frame's UDP/TCP checksum is right: the one's-complement sum of the pseudo-header and
    /// the whole segment (checksum included) is all ones.</summary>
    public static bool TransportChecksumValidates(byte[] frame)
    {
        byte protocol = frame[EthernetHeader + 9];
        var segment = frame.AsSpan(EthernetHeader + Ipv4Header);
        return Fold(Sum(PseudoHeader(protocol, segment.Length)) + Sum(segment)) == 0xFFFF;
    }

    /// <summary>The one's-complement sum of 16-bit big-endian words (an odd last byte padded with zero), folded.</summary>
    public static uint Sum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i < data.Length; i += 2)
        {
            uint hi = data[i], lo = i + 1 < data.Length ? data[i + 1] : 0u;
            sum += (hi << 8) | lo;
            sum = Fold(sum);
        }
        return sum;
    }

    public static uint Fold(uint sum)
    {
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return sum;
    }
}
