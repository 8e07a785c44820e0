using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Storage;
using Xhyve.Vmm.Tests.Fakes;
using static Xhyve.Vmm.Tests.Ahci.Atapi.Atapi;

namespace Xhyve.Vmm.Tests.Ahci.Atapi;

/// <summary>READ(10) and READ(12) from an ISO image file: the bytes, the PRDT shapes, and hostile LBAs and lengths.</summary>
public sealed class AtapiReadTests : IDisposable
{
    private const int Sectors = 64;
    private readonly string _dir = Directory.CreateTempSubdirectory("atapi").FullName;
    private readonly byte[] _image;
    private readonly string _path;

    public AtapiReadTests()
    {
        // Every byte differs from its neighbours and from the same offset in other sectors.
        _image = new byte[Sectors * 2048 + 700];        // a partial sector at the end, which is not readable
        for (int i = 0; i < _image.Length; i++) _image[i] = (byte)(i * 7 + i / 2048 * 13 + 1);
        _path = Path.Combine(_dir, "disc.iso");
        File.WriteAllBytes(_path, _image);
    }

    public void Dispose() => Directory.Delete(_dir, true);

    private AtapiCdrom Drive() => Ready(new AtapiCdrom("ahci-cd 0:3:0 port 0", RawImage.Open(_path, new RawImageOptions(ReadOnly: true))));

    private static byte[] Read10(uint lba, ushort count) =>
        [0x28, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(count >> 8), (byte)count, 0];

    private static byte[] Read12(uint lba, uint count) =>
        [0xA8, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, (byte)(count >> 24), (byte)(count >> 16), (byte)(count >> 8), (byte)count, 0, 0];

    [Fact]
    public void Read10_ReturnsTheImagesBytes_AcrossAnUnevenPrdt()
    {
        using var d = Drive();
        using var b = new GuestBuffers(1000, 3000, 4192);
        AssertGood(Run(d, b, Read10(3, 4)), 4 * 2048);
        Assert.Equal(_image.AsSpan(3 * 2048, 4 * 2048).ToArray(), b.Bytes.ToArray());
        Assert.Equal(4 * 2048, b.Written());
    }

    [Fact]
    public void Read12_ReturnsTheImagesBytes_AndLeavesTheRestOfALongerPrdtAlone()
    {
        using var d = Drive();
        using var b = new GuestBuffers(2048, 1500, 8192);
        AssertGood(Run(d, b, Read12(Sectors - 2, 2)), 2 * 2048);
        Assert.Equal(_image.AsSpan((Sectors - 2) * 2048, 4096).ToArray(), b.Bytes[..4096].ToArray());
        Assert.Equal(4096, b.Written());
    }

    [Fact]
    public void Read_ZeroSectors_SucceedsMovingNothing()
    {
        using var d = Drive();
        using var b = new GuestBuffers(2048);
        AssertGood(Run(d, b, Read10(5, 0)), 0);
        AssertGood(Run(d, b, Read10(Sectors, 0)), 0);       // at the end: still in range
        Assert.Equal(0, b.Written());
    }

    [Theory]
    [InlineData(Sectors, 1)]                    // just past the end
    [InlineData(Sectors - 1, 2)]                // runs past the end (into the partial sector)
    [InlineData(0, Sectors + 1)]
    [InlineData(0xFFFFFFFF, 1)]
    [InlineData(0xFFFFFFFF, 0xFFFF)]            // wraps in 32 bits
    [InlineData(Sectors + 1, 0)]                // an empty transfer that starts past the end
    public void Read10_OutsideTheDisc_IsLbaOutOfRange_WritingNothing(uint lba, int count)
    {
        using var d = Drive();
        using var b = new GuestBuffers(1 << 16);
        AssertCheck(d, Run(d, b, Read10(lba, (ushort)count)), SenseCode.LbaOutOfRange);
        Assert.Equal(0, b.Written());
    }

    [Theory]
    [InlineData(0xFFFFFFFF, 0xFFFFFFFF)]
    [InlineData(1, 0xFFFFFFFF)]
    [InlineData(0x80000000, 0x80000000)]
    public void Read12_HugeRanges_AreLbaOutOfRange(uint lba, uint count)
    {
        using var d = Drive();
        using var b = new GuestBuffers(4096);
        AssertCheck(d, Run(d, b, Read12(lba, count)), SenseCode.LbaOutOfRange);
        Assert.Equal(0, b.Written());
    }

    [Fact]
    public void Read_HugerThanACompletionCanReport_OnAHugeDisc_IsRefusedWithoutReading()
    {
        var medium = new TrackedMedium(1L << 42);
        using var d = Ready(new AtapiCdrom("cd", medium));
        using var b = new GuestBuffers(4096);
        AssertCheck(d, Run(d, b, Read12(0, 0x00100000)), SenseCode.InvalidFieldInCdb);    // 2 GiB
        Assert.Equal(0, medium.Inner.Reads);
    }

    [Theory]
    [InlineData(new[] { 2047 })]
    [InlineData(new[] { 1024, 1023 })]
    [InlineData(new int[0])]
    public void Read_IntoAPrdtShorterThanTheTransfer_IsACheckCondition_WritingNothing(int[] prdt)
    {
        var medium = new TrackedMedium(Sectors * 2048);
        using var d = Ready(new AtapiCdrom("cd", medium));
        using var b = new GuestBuffers(prdt);
        AssertCheck(d, Run(d, b, Read10(0, 1)), SenseCode.InvalidFieldInCdb);
        Assert.Equal(0, b.Written());
        Assert.Equal(0, medium.Inner.Reads);
    }

    [Fact]
    public void Read_OnAnEmptyDrive_IsNotReady()
    {
        using var d = Ready(new AtapiCdrom("cd", null));
        using var b = new GuestBuffers(2048);
        AssertCheck(d, Run(d, b, Read10(0, 1)), SenseCode.MediumNotPresent);
    }

    [Fact]
    public void Read_WhenTheHostReadFails_IsAnUnrecoveredReadError()
    {
        var medium = new TrackedMedium(Sectors * 2048);
        using var d = Ready(new AtapiCdrom("cd", medium));
        medium.Inner.Throw = new StorageException("disc.iso: read at 0 failed: Input/output error");
        using var b = new GuestBuffers(2048);
        AssertCheck(d, Run(d, b, Read10(0, 1)), SenseCode.UnrecoveredReadError);
        medium.Inner.Throw = null;
        AssertGood(Run(d, b, Read10(0, 1)), 2048);
    }

    [Fact]
    public void Read_AllocatesNothing_EvenWhenThePrdtIsTrimmed()
    {
        using var d = Drive();
        using var exact = new GuestBuffers(2048, 2048);
        using var longer = new GuestBuffers(512, 512, 1024, 2048, 4096);
        var cdb = new byte[16];
        Read10(1, 2).CopyTo(cdb, 0);
        for (int i = 0; i < 10; i++)         // warm up (JIT, first-use paths)
        {
            d.Execute(PacketCommand, cdb, exact.List);
            d.Execute(PacketCommand, cdb, longer.List);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 200; i++)
        {
            d.Execute(PacketCommand, cdb, exact.List);
            d.Execute(PacketCommand, cdb, longer.List);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(_image.AsSpan(2048, 4096).ToArray(), longer.Bytes[..4096].ToArray());
    }

    [Fact]
    public void Read_WithAPrdtOfMoreEntriesThanTheScratch_StillReadsRightBytes()
    {
        using var d = Drive();
        var lengths = Enumerable.Repeat(16, 1024).Append(4096).ToArray();   // 1025 entries, 20 KiB; the read takes 4 sectors
        using var b = new GuestBuffers(lengths);
        AssertGood(Run(d, b, Read10(10, 4)), 8192);
        Assert.Equal(_image.AsSpan(10 * 2048, 8192).ToArray(), b.Bytes[..8192].ToArray());
        Assert.Equal(8192, b.Written());
    }

    [Fact]
    public void HostileCommands_NeverThrow_NorWritePastTheTransferTheyReport()
    {
        using var d = Drive();
        var random = new Random(14);
        var packet = new byte[16];
        for (int i = 0; i < 20000; i++)
        {
            random.NextBytes(packet);
            // Bias towards the opcodes the drive knows so their argument checks are exercised.
            byte[] known = [0x00, 0x03, 0x12, 0x1B, 0x1E, 0x25, 0x28, 0x43, 0x46, 0x4A, 0x51, 0x5A, 0xA8, 0xBD];
            if (random.Next(4) != 0) packet[0] = known[random.Next(known.Length)];
            if (packet[0] == 0x1B) packet[4] &= 0xFD;      // no eject: the rest would run on an empty drive
            var lengths = Enumerable.Range(0, random.Next(0, 5)).Select(_ => random.Next(0, 5000)).ToArray();
            using var b = new GuestBuffers(lengths);
            var c = d.Execute(PacketCommand, packet, b.List);
            Assert.True(c.TransferredBytes >= 0 && c.TransferredBytes <= b.Bytes.Length);
            Assert.True(b.Written() <= c.TransferredBytes, $"packet {Convert.ToHexString(packet)}: wrote {b.Written()}, reported {c.TransferredBytes}");
            if (c.IsError) Assert.Equal(0, c.TransferredBytes);
        }
    }
}
