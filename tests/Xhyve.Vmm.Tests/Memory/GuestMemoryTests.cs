using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Memory;

public sealed class GuestMemoryTests
{
    [Fact]
    public void RamLayout_SplitsAroundThePciHole_AsBhyveDoes()
    {
        var regions = X86Layout.RamRegions(5UL << 30);
        Assert.Equal(2, regions.Count);
        Assert.Equal(0UL, regions[0].Start.Value);
        Assert.Equal(3UL << 30, regions[0].Size);
        Assert.Equal(4UL << 30, regions[1].Start.Value);
        Assert.Equal(2UL << 30, regions[1].Size);
        Assert.Single(X86Layout.RamRegions(256UL << 20));
    }

    [Fact]
    public void Accesses_InsideARegion_Succeed()
    {
        using var mem = new GuestMemory([new MemoryRegion(new GuestAddress(0), 1 << 20)]);
        Assert.True(mem.TryWrite(new GuestAddress(0x1000), [1, 2, 3]));
        var back = new byte[3];
        Assert.True(mem.TryRead(new GuestAddress(0x1000), back));
        Assert.Equal(new byte[] { 1, 2, 3 }, back);
    }

    [Theory]
    [InlineData(0xFFFFFUL, 2)]          // straddles the end
    [InlineData(0x100000UL, 1)]         // just past the end
    [InlineData(ulong.MaxValue, 1)]     // would wrap
    [InlineData(0x2000_0000UL, 4)]      // in the gap between regions
    public void Accesses_OutsideRam_AreRefused(ulong address, int length)
    {
        using var mem = new GuestMemory([new MemoryRegion(new GuestAddress(0), 1 << 20), new MemoryRegion(new GuestAddress(1UL << 32), 1 << 20)]);
        Assert.False(mem.TryWrite(new GuestAddress(address), new byte[length]));
        Assert.False(mem.TryGetSpan(new GuestAddress(address), length, out _));
    }

    [Fact]
    public void NegativeLength_IsRefused()
    {
        using var mem = new GuestMemory([new MemoryRegion(new GuestAddress(0), 4096)]);
        Assert.False(mem.TryGetSpan(new GuestAddress(0), -1, out _));
    }

    [Fact]
    public void GuestAddress_TryAdd_DetectsOverflow()
    {
        Assert.False(new GuestAddress(ulong.MaxValue - 1).TryAdd(2, out _));
        Assert.True(new GuestAddress(10).TryAdd(5, out var r));
        Assert.Equal(15UL, r.Value);
    }
}
