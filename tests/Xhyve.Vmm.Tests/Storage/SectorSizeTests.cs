using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Virtio.Block;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>One rule for sector sizes: every power of two from 512 to 64 KiB, in the options, the image layout and
/// both disk devices (bhyve accepts any power of two of at least 512).</summary>
public class SectorSizeTests
{
    public static IEnumerable<object[]> PowersOfTwo() => Enumerable.Range(9, 8).Select(shift => new object[] { 1 << shift });

    [Theory]
    [MemberData(nameof(PowersOfTwo))]
    public void EveryPowerOfTwoFrom512To64KiB_IsAcceptedByTheOptionsTheLayoutAndVirtioBlk(int size)
    {
        var o = BlockDeviceOptions.Parse($"a.img,sectorsize={size},size=4M,split=1M,sparse");
        Assert.Equal((size, size), (o.LogicalSectorSize, o.PhysicalSectorSize));
        Assert.Empty(o.SplitLayout!.Validate());
        using var block = new VirtioBlock(new Fakes.FakeBlockBackend(4L << 20), size, size);
        Span<byte> blkSize = stackalloc byte[4];
        block.ReadConfig(20, blkSize);
        Assert.Equal(size, BitConverter.ToInt32(blkSize));
    }

    [Theory]
    [InlineData(256, 256)]
    [InlineData(768, 768)]
    [InlineData(131072, 131072)]
    [InlineData(2048, 1024)]
    [InlineData(512, 3072)]
    [InlineData(4096, 131072)]
    public void OtherSizes_AreRefusedByEveryDevice(int logical, int physical)
    {
        Assert.NotNull(SectorSize.Problem(logical, physical));
        Assert.Throws<ArgumentException>(() => new VirtioBlock(new Fakes.FakeBlockBackend(4L << 20), logical, physical));
        Assert.Throws<ArgumentException>(() => new Xhyve.Vmm.Devices.Ahci.AtaDisk("d", new Fakes.FakeBlockBackend(4L << 20), logical, physical));
    }
}
