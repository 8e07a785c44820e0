using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Vmm.Tests.Hypervisor;

public sealed class CpuidTopologyTests
{
    private static readonly KvmCpuidEntry2[] Host =
    [
        new() { Function = 0, Eax = 0x1F },
        new() { Function = 1, Ebx = 0x0801_0800, Edx = 0 },
        new() { Function = 4, Index = 0, Flags = 1, Eax = 0xFC00_4121 },
        new() { Function = 0xB, Index = 0, Flags = 1, Ebx = 2, Ecx = 0x100, Edx = 7 },
        new() { Function = 0x1F, Index = 0, Flags = 1 },
        new() { Function = 0x8000_0008, Ecx = 0x3F },
    ];

    private static KvmCpuidEntry2 Leaf(KvmCpuidEntry2[] e, uint f, uint i = 0) => e.Single(x => x.Function == f && x.Index == i);

    [Theory]
    [InlineData(0, 1)]
    [InlineData(2, 4)]
    [InlineData(5, 6)]
    public void Leaf1_ReportsApicIdAndLogicalCount(int id, int count)
    {
        var e = CpuidTopology.ForVcpu(Host, id, count);
        var l1 = Leaf(e, 1);
        Assert.Equal((uint)id, l1.Ebx >> 24);
        Assert.Equal((uint)count, l1.Ebx >> 16 & 0xFF);
        Assert.Equal(count > 1, (l1.Edx & 1u << 28) != 0);
        Assert.NotEqual(0u, l1.Ecx & 1u << 31);
    }

    [Fact]
    public void LeafB_And1F_DescribeOneThreadPerCore_AndNCoresPerPackage()
    {
        var e = CpuidTopology.ForVcpu(Host, 3, 6);
        foreach (uint leaf in new[] { 0xBu, 0x1Fu })
        {
            var smt = Leaf(e, leaf, 0);
            var core = Leaf(e, leaf, 1);
            var end = Leaf(e, leaf, 2);
            Assert.Equal(1u, smt.Ebx);
            Assert.Equal(1u, smt.Ecx >> 8);
            Assert.Equal(3u, core.Eax);       // ceil(log2(6))
            Assert.Equal(6u, core.Ebx);
            Assert.Equal(2u, core.Ecx >> 8);
            Assert.Equal(0u, end.Ecx >> 8 & 0xFF);
            Assert.Equal(3u, smt.Edx);
            Assert.Equal(3u, core.Edx);
        }
    }

    [Fact]
    public void Leaf4_And80000008_ReportCoreCount()
    {
        var e = CpuidTopology.ForVcpu(Host, 0, 4);
        Assert.Equal(3u, Leaf(e, 4).Eax >> 26);
        Assert.Equal(0x121u, Leaf(e, 4).Eax & 0x3FFF);
        Assert.Equal(3u, Leaf(e, 0x8000_0008).Ecx & 0xFF);
    }
}
