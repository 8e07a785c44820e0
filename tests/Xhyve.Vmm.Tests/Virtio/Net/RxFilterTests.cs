using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio.Net;

namespace Xhyve.Vmm.Tests.Virtio.Net;

/// <summary>The receive filter (VIRTIO_NET_F_CTRL_RX): promiscuous until told otherwise, the mode switches, and the
/// MAC tables with every malformed length a driver could send.</summary>
public sealed class RxFilterTests
{
    private const ulong Own = 0x5254_0012_3456;
    private static readonly byte[] OwnMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    private static readonly byte[] OtherUnicast = [0x52, 0x54, 0x00, 0x99, 0x99, 0x99];
    private static readonly byte[] ListedUnicast = [0x02, 0x00, 0x00, 0x00, 0x00, 0x07];
    private static readonly byte[] Multicast = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
    private static readonly byte[] ListedMulticast = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
    private static readonly byte[] Broadcast = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    private static byte[] On => [1];
    private static byte[] Off => [0];

    /// <summary>A MAC_TABLE_SET payload: le32 count and entries for unicast, then for multicast.</summary>
    private static byte[] Tables(byte[][] unicast, byte[][] multicast, uint? unicastCount = null, uint? multicastCount = null)
    {
        var b = new List<byte>();
        void Table(byte[][] entries, uint? count)
        {
            var n = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(n, count ?? (uint)entries.Length);
            b.AddRange(n);
            foreach (var e in entries) b.AddRange(e);
        }
        Table(unicast, unicastCount);
        Table(multicast, multicastCount);
        return b.ToArray();
    }

    private static byte[][] Macs(int count, byte first) =>
        Enumerable.Range(0, count).Select(i => new byte[] { first, 0, 0, 0, (byte)(i >> 8), (byte)i }).ToArray();

    /// <summary>Which of: own, broadcast, other unicast, other multicast, listed unicast, listed multicast it accepts.</summary>
    private static bool[] Accepted(RxFilter f) =>
        [.. new[] { OwnMac, Broadcast, OtherUnicast, Multicast, ListedUnicast, ListedMulticast }.Select(d => f.Accepts(d, Own))];

    private static RxFilter Filtering()
    {
        var f = new RxFilter();
        Assert.True(f.SetMode(NetControl.RxPromisc, Off));
        return f;
    }

    [Fact]
    public void NewFilter_IsPromiscuous_AndAcceptsEveryFrame()
    {
        var f = new RxFilter();
        Assert.True(f.Promiscuous);
        foreach (var d in new[] { OwnMac, OtherUnicast, Multicast, Broadcast }) Assert.True(f.Accepts(d, Own));
    }

    [Fact]
    public void PromiscuousOff_WithEmptyTables_AcceptsOwnAddressAndBroadcastOnly()
    {
        Assert.Equal([true, true, false, false, false, false], Accepted(Filtering()));
    }

    [Fact]
    public void Modes_SwitchEachClassOnAndOff()
    {
        var f = Filtering();
        Assert.True(f.SetMode(NetControl.RxAllUni, On));
        Assert.True(f.Accepts(OtherUnicast, Own));
        Assert.True(f.SetMode(NetControl.RxAllMulti, On));
        Assert.True(f.Accepts(Multicast, Own));
        Assert.True(f.SetMode(NetControl.RxNoBroadcast, On));
        Assert.False(f.Accepts(Broadcast, Own));
        Assert.True(f.SetMode(NetControl.RxNoMulti, On));
        Assert.False(f.Accepts(Multicast, Own));                        // NOMULTI wins over ALLMULTI
        Assert.True(f.SetMode(NetControl.RxNoUni, On));
        Assert.False(f.Accepts(OtherUnicast, Own));                     // NOUNI wins over ALLUNI
        Assert.True(f.Accepts(OwnMac, Own));                            // the device's own address always gets through
        Assert.True(f.SetMode(NetControl.RxNoBroadcast, Off));
        Assert.True(f.Accepts(Broadcast, Own));
        Assert.True(f.SetMode(NetControl.RxPromisc, On));
        foreach (var d in new[] { OtherUnicast, Multicast, Broadcast }) Assert.True(f.Accepts(d, Own));
    }

    [Theory]
    [InlineData(NetControl.RxPromisc, new byte[0])]
    [InlineData(NetControl.RxPromisc, new byte[] { 1, 0 })]
    [InlineData(NetControl.RxPromisc, new byte[] { 2 })]
    [InlineData(NetControl.RxAllMulti, new byte[] { 0xFF })]
    [InlineData(6, new byte[] { 1 })]
    [InlineData(0xFF, new byte[] { 0 })]
    public void SetMode_RefusesBadDataOrUnknownCommands_AndChangesNothing(byte command, byte[] data)
    {
        var f = new RxFilter();
        Assert.False(f.SetMode(command, data));
        Assert.True(f.Promiscuous);
        Assert.False(f.AllMulticast || f.AllUnicast || f.NoMulticast || f.NoUnicast || f.NoBroadcast);
    }

    [Fact]
    public void Tables_AcceptListedAddresses_AndNothingElseOfTheirClass()
    {
        var f = Filtering();
        Assert.True(f.SetTables(Tables([ListedUnicast], [ListedMulticast])));
        Assert.Equal([true, true, false, false, true, true], Accepted(f));
        // A new command replaces the tables.
        Assert.True(f.SetTables(Tables([], [])));
        Assert.False(f.Accepts(ListedUnicast, Own));
        Assert.False(f.Accepts(ListedMulticast, Own));
    }

    [Fact]
    public void Tables_OfExactly64Entries_AreKept()
    {
        var f = Filtering();
        var uni = Macs(RxFilter.TableEntries, 0x02);
        var multi = Macs(RxFilter.TableEntries, 0x03);
        Assert.True(f.SetTables(Tables(uni, multi)));
        Assert.True(f.Accepts(uni[63], Own));
        Assert.True(f.Accepts(multi[63], Own));
        Assert.False(f.Accepts(OtherUnicast, Own));
        Assert.False(f.Accepts(Multicast, Own));
    }

    [Fact]
    public void MoreThan64Entries_AcceptTheWholeClass_InsteadOfLosingFrames()
    {
        var f = Filtering();
        Assert.True(f.SetTables(Tables(Macs(65, 0x02), [])));
        Assert.True(f.Accepts(OtherUnicast, Own));                      // every unicast
        Assert.False(f.Accepts(Multicast, Own));                        // multicast still filtered
        Assert.True(f.SetTables(Tables([], Macs(200, 0x03))));
        Assert.False(f.Accepts(OtherUnicast, Own));                     // the overflow went with the old table
        Assert.True(f.Accepts(Multicast, Own));
        Assert.True(f.SetMode(NetControl.RxNoMulti, On));
        Assert.False(f.Accepts(Multicast, Own));                        // NOMULTI still applies
    }

    public static TheoryData<string, byte[]> MalformedTables => new()
    {
        { "empty", [] },
        { "three bytes", [0, 0, 0] },
        { "unicast count only", [0, 0, 0, 0] },
        { "no multicast count", Tables([ListedUnicast], [])[..10] },
        { "short multicast count", Tables([ListedUnicast], [])[..12] },
        { "entry cut short", Tables([ListedUnicast], [ListedMulticast])[..^1] },
        { "a trailing byte", [.. Tables([ListedUnicast], [ListedMulticast]), 0] },
        { "trailing bytes after empty tables", [.. Tables([], []), 1, 2, 3, 4, 5, 6] },
        { "unicast count one too many", Tables([ListedUnicast], [], unicastCount: 2) },
        { "multicast count one too many", Tables([], [ListedMulticast], multicastCount: 2) },
        // 0x2AAAAAAB * 6 = 0x1_0000_0002: 2 in 32 bits, so a wrapping check would see two bytes of entries.
        // The 2 "entry" bytes then an empty multicast table: 10 bytes, exactly what a wrapped length would expect.
        { "unicast count*6 wraps to 2", [0xAB, 0xAA, 0xAA, 0x2A, 0, 0, 0, 0, 0, 0] },
        // 0x2AAAAAAC * 6 = 0x1_0000_0008.
        { "multicast count*6 wraps to 8", [0, 0, 0, 0, 0xAC, 0xAA, 0xAA, 0x2A, 1, 2, 3, 4, 5, 6, 7, 8] },
        { "count 0xFFFFFFFF", Tables([ListedUnicast], [], unicastCount: uint.MaxValue) },
        { "multicast count 0x80000000", Tables([], [ListedMulticast], multicastCount: 0x8000_0000) },
    };

    [Theory]
    [MemberData(nameof(MalformedTables))]
    public void MalformedTables_AreRefused_AndLeaveTheOldTablesInPlace(string scenario, byte[] data)
    {
        var f = Filtering();
        Assert.True(f.SetTables(Tables([ListedUnicast], [ListedMulticast])));
        Assert.False(f.SetTables(data), scenario);
        Assert.Equal([true, true, false, false, true, true], Accepted(f));
    }

    [Fact]
    public void Reset_ReturnsToPromiscuous_AndForgetsTablesAndModes()
    {
        var f = Filtering();
        f.SetMode(NetControl.RxNoBroadcast, On);
        f.SetTables(Tables([ListedUnicast], Macs(100, 0x03)));
        f.Reset();
        Assert.True(f.Promiscuous);
        Assert.False(f.NoBroadcast);
        f.SetMode(NetControl.RxPromisc, Off);
        Assert.False(f.Accepts(ListedUnicast, Own));
        Assert.False(f.Accepts(Multicast, Own));                        // the multicast overflow is gone too
        Assert.True(f.Accepts(Broadcast, Own));
    }

    [Fact]
    public void Mac_ReadsSixBytesFirstByteHighest()
    {
        Assert.Equal(Own, RxFilter.Mac(OwnMac));
        Assert.Equal(0xFFFF_FFFF_FFFFUL, RxFilter.Mac(Broadcast));
    }
}
