using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Net;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>struct virtio_net_hdr: its two sizes on the wire, the checks on what a guest sends, and the checksum the
/// device completes for a backend that cannot take the header, compared with one computed independently.</summary>
public sealed class NetHeaderTests
{
    private static readonly NetHeader Sample = new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4, 0x1122, 0x3344, 0x5566, 0x7788, 0x99AA);
    private const ulong AllOffloads = NetFeatures.Csum | NetFeatures.HostTso4 | NetFeatures.HostTso6 | NetFeatures.HostEcn;

    [Fact]
    public void Write12_PutsEveryFieldLittleEndianInItsPlace_AndReadGivesItBack()
    {
        var b = new byte[NetHeader.Size];
        Sample.Write(b);
        Assert.Equal(new byte[] { 0x01, 0x01, 0x22, 0x11, 0x44, 0x33, 0x66, 0x55, 0x88, 0x77, 0xAA, 0x99 }, b);
        Assert.Equal(Sample, NetHeader.Read(b));
    }

    [Fact]
    public void Write10_LeavesOutNumBuffers_AndTouchesNoByteAfterTheHeader()
    {
        var b = Enumerable.Repeat((byte)0xEE, 16).ToArray();
        Sample.Write(b.AsSpan(0, NetHeader.LegacySize));
        Assert.Equal(new byte[] { 0x01, 0x01, 0x22, 0x11, 0x44, 0x33, 0x66, 0x55, 0x88, 0x77, 0xEE, 0xEE }, b[..12]);
        Assert.Equal(Sample with { NumBuffers = 0 }, NetHeader.Read(b.AsSpan(0, NetHeader.LegacySize)));
    }

    [Fact]
    public void GsoKind_IgnoresTheEcnBit_AndNeedsChecksumFollowsTheFlag()
    {
        var h = new NetHeader(NetHeader.FlagDataValid, NetHeader.GsoTcpV6 | NetHeader.GsoEcn, 0, 0, 0, 0, 0);
        Assert.Equal(NetHeader.GsoTcpV6, h.GsoKind);
        Assert.False(h.NeedsChecksum);
        Assert.True((h with { Flags = 3 }).NeedsChecksum);
    }

    public static TheoryData<string, NetHeader, int, ulong, TxHeaderError> Checks => new()
    {
        { "plain frame", default, 60, 0, TxHeaderError.None },
        { "DATA_VALID alone", new(NetHeader.FlagDataValid, 0, 0, 0, 0, 0, 0), 60, 0, TxHeaderError.None },
        { "unknown flag 4", new(4, 0, 0, 0, 0, 0, 0), 60, AllOffloads, TxHeaderError.UnknownFlags },
        { "unknown flag 0x80 with NEEDS_CSUM", new(0x81, 0, 0, 0, 34, 6, 0), 60, AllOffloads, TxHeaderError.UnknownFlags },
        { "NEEDS_CSUM without CSUM", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 34, 6, 0), 60, AllOffloads & ~NetFeatures.Csum, TxHeaderError.OffloadNotNegotiated },
        { "checksum field ends at the frame's end", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 50, 8, 0), 60, NetFeatures.Csum, TxHeaderError.None },
        { "checksum field one byte past the end", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 50, 9, 0), 60, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "csum_start at the end", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 60, 0, 0), 60, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "csum_start 0xFFFF", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 0xFFFF, 0, 0), 60, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "csum_offset 0xFFFF", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 0, 0xFFFF, 0), 60, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "both 0xFFFF", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 0xFFFF, 0xFFFF, 0), 65535, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "csum_offset 0xFFFE in a 64K frame", new(NetHeader.FlagNeedsCsum, 0, 0, 0, 1, 0xFFFE, 0), 65536, NetFeatures.Csum, TxHeaderError.ChecksumOutsideFrame },
        { "checksum position ignored without NEEDS_CSUM", new(0, 0, 0, 0, 0xFFFF, 0xFFFF, 0), 60, 0, TxHeaderError.None },
        { "TSO4 negotiated", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4, 54, 1448, 34, 16, 0), 9000, AllOffloads, TxHeaderError.None },
        { "TSO6 negotiated", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV6, 74, 1428, 54, 16, 0), 9000, AllOffloads, TxHeaderError.None },
        { "TSO4 without HOST_TSO4", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4, 54, 1448, 34, 16, 0), 9000, AllOffloads & ~NetFeatures.HostTso4, TxHeaderError.OffloadNotNegotiated },
        { "TSO6 without HOST_TSO6", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV6, 74, 1428, 54, 16, 0), 9000, AllOffloads & ~NetFeatures.HostTso6, TxHeaderError.OffloadNotNegotiated },
        { "GSO without NEEDS_CSUM", new(0, NetHeader.GsoTcpV4, 54, 1448, 34, 16, 0), 9000, AllOffloads, TxHeaderError.BadGso },
        { "GSO with gso_size 0", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4, 54, 0, 34, 16, 0), 9000, AllOffloads, TxHeaderError.BadGso },
        { "ECN with HOST_ECN", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4 | NetHeader.GsoEcn, 54, 1448, 34, 16, 0), 9000, AllOffloads, TxHeaderError.None },
        { "ECN without HOST_ECN", new(NetHeader.FlagNeedsCsum, NetHeader.GsoTcpV4 | NetHeader.GsoEcn, 54, 1448, 34, 16, 0), 9000, AllOffloads & ~NetFeatures.HostEcn, TxHeaderError.OffloadNotNegotiated },
        { "ECN without a GSO type", new(0, NetHeader.GsoEcn, 0, 0, 0, 0, 0), 60, AllOffloads, TxHeaderError.BadGso },
        { "GSO_UDP (UFO)", new(NetHeader.FlagNeedsCsum, NetHeader.GsoUdp, 42, 1472, 34, 6, 0), 9000, AllOffloads, TxHeaderError.BadGso },
        { "GSO type 2", new(NetHeader.FlagNeedsCsum, 2, 54, 1448, 34, 16, 0), 9000, AllOffloads, TxHeaderError.BadGso },
        { "GSO type 5 (UDP_L4)", new(NetHeader.FlagNeedsCsum, 5, 42, 1472, 34, 6, 0), 9000, AllOffloads, TxHeaderError.BadGso },
        { "GSO type 0x7F", new(NetHeader.FlagNeedsCsum, 0x7F, 54, 1448, 34, 16, 0), 9000, AllOffloads, TxHeaderError.BadGso },
    };

    [Theory]
    [MemberData(nameof(Checks))]
    public void Check_GivesTheReasonForEveryBadHeader(string scenario, NetHeader header, int frameLength, ulong negotiated, TxHeaderError expected)
    {
        Assert.True(expected == NetHeader.Check(header, frameLength, negotiated), scenario);
    }

    [Theory]
    [InlineData(NetPackets.Udp, 0)]
    [InlineData(NetPackets.Udp, 1)]
    [InlineData(NetPackets.Udp, 37)]
    [InlineData(NetPackets.Udp, 1472)]
    [InlineData(NetPackets.Tcp, 0)]
    [InlineData(NetPackets.Tcp, 1)]
    [InlineData(NetPackets.Tcp, 7)]
    [InlineData(NetPackets.Tcp, 1460)]
    [InlineData(NetPackets.Tcp, 65495)]
    public void CompleteChecksum_OfALinuxPartialChecksum_ValidatesAgainstThePseudoHeader(byte protocol, int payload)
    {
        for (int seed = 0; seed < 20; seed++)
        {
            var (frame, start, offset) = NetPackets.PartialChecksumFrame(protocol, payload, seed);
            var before = frame.ToArray();
            NetHeader.CompleteChecksum(frame, start, offset);
            Assert.True(NetPackets.TransportChecksumValidates(frame), $"protocol {protocol}, payload {payload}, seed {seed}");
            // Only the two checksum bytes changed.
            for (int i = 0; i < frame.Length; i++)
                if (i != start + offset && i != start + offset + 1) Assert.Equal(before[i], frame[i]);
        }
    }

    [Fact]
    public void CompleteChecksum_EqualsTheIndependentChecksum_ForRandomSpansStartsAndOddLengths()
    {
        var random = new Random(5);
        for (int n = 0; n < 2000; n++)
        {
            int length = random.Next(2, 300);
            var data = new byte[length];
            random.NextBytes(data);
            int start = random.Next(0, length - 1);
            int offset = random.Next(0, length - start - 1);
            var expected = data.ToArray();
            ushort partial = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(start + offset));
            // Independently: the sum over the covered bytes (the field holding its partial value), inverted.
            ushort sum = (ushort)~NetPackets.Sum(data.AsSpan(start));
            if (sum == 0) sum = 0xFFFF;
            BinaryPrimitives.WriteUInt16BigEndian(expected.AsSpan(start + offset), sum);
            NetHeader.CompleteChecksum(data, start, offset);
            Assert.True(expected.AsSpan().SequenceEqual(data), $"length {length}, start {start}, offset {offset}, partial {partial:x4}");
        }
    }

    [Fact]
    public void CompleteChecksum_OddLength_PadsTheLastByteWithZero()
    {
        byte[] frame = [0x00, 0x00, 0x12, 0x34, 0xAB];       // checksum at 0, covering 00 00 12 34 AB(00)
        NetHeader.CompleteChecksum(frame, 0, 0);
        ushort expected = unchecked((ushort)~(0x1234 + 0xAB00));
        Assert.Equal(expected, BinaryPrimitives.ReadUInt16BigEndian(frame));
    }

    [Fact]
    public void CompleteChecksum_AResultOfZero_IsSentAsAllOnes()
    {
        // The covered bytes sum to 0xFFFF, so the inverted sum is 0, which UDP cannot send (RFC 768).
        byte[] frame = [0xEE, 0xFF, 0xFF, 0x00, 0x00];
        NetHeader.CompleteChecksum(frame, 1, 2);
        Assert.Equal(new byte[] { 0xEE, 0xFF, 0xFF, 0xFF, 0xFF }, frame);
        byte[] zeros = new byte[8];
        NetHeader.CompleteChecksum(zeros, 0, 6);             // all zero: the sum is 0, its inverse 0xFFFF
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16BigEndian(zeros.AsSpan(6)));
    }

    [Fact]
    public void CompleteChecksum_UdpWhoseChecksumComesOutZero_IsSentAsFFFF_AndStillValidates()
    {
        // Pick a payload word so the real UDP checksum is 0: RFC 768 says send 0xFFFF (0 would mean "no checksum").
        var (frame, start, offset) = NetPackets.PartialChecksumFrame(NetPackets.Udp, 2, seed: 1);
        int payloadAt = start + NetPackets.UdpHeader;
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(payloadAt), 0);
        var probe = frame.ToArray();
        NetHeader.CompleteChecksum(probe, start, offset);
        ushort c = BinaryPrimitives.ReadUInt16BigEndian(probe.AsSpan(start + offset));
        // Adding the checksum value into the payload makes the sum all ones, i.e. a checksum of zero.
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(payloadAt), c);
        Assert.Equal(0xFFFFu, NetPackets.Fold(NetPackets.Sum(frame.AsSpan(start))));
        NetHeader.CompleteChecksum(frame, start, offset);
        Assert.Equal(0xFFFF, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(start + offset)));
        Assert.True(NetPackets.TransportChecksumValidates(frame));
    }
}
