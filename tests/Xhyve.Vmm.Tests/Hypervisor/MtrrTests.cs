using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Vmm.Tests.Hypervisor;

/// <summary>The MTRR values firmware leaves for the OS, and the invariant-TSC bit only where HWCR agrees.</summary>
public sealed class MtrrTests
{
    private const ulong KvmMtrrCap = 0x508;          // WC supported, fixed ranges, 8 variable MTRRs (what KVM reports)
    private static readonly X86MemoryTypes Platform = new([new(0xC000_0000, 0x4000_0000), new(0x1_0000_0000, 32UL << 30)]);

    private static Dictionary<uint, ulong> Plan(X86MemoryTypes types, ulong cap, int bits, out IReadOnlyList<UncachedRange> undescribed) =>
        Mtrrs.Plan(types, cap, bits, out undescribed).ToDictionary(m => m.Index, m => m.Value);

    /// <summary>The memory type a CPU would give an address: a matching variable MTRR, else the default (Intel SDM 11.11.4).</summary>
    private static int TypeOf(Dictionary<uint, ulong> msrs, ulong address, int bits, int variableCount)
    {
        var types = new List<int>();
        for (uint i = 0; i < variableCount; i++)
        {
            ulong physBase = msrs[Mtrrs.PhysBase0 + 2 * i], physMask = msrs[Mtrrs.PhysBase0 + 2 * i + 1];
            if ((physMask & (1UL << 11)) == 0) continue;
            ulong mask = physMask & ~0xFFFUL & ((1UL << bits) - 1);
            if ((address & mask) == (physBase & mask)) types.Add((int)(physBase & 0xFF));
        }
        if (types.Contains(Mtrrs.Uncacheable)) return Mtrrs.Uncacheable;
        return types.Count > 0 ? types[0] : (int)(msrs[Mtrrs.DefType] & 0xFF);
    }

    [Fact]
    public void DefaultType_IsWriteBack_WithMtrrsAndFixedRangesEnabled()
    {
        var msrs = Plan(Platform, KvmMtrrCap, 40, out var undescribed);
        Assert.Equal(0xC06UL, msrs[Mtrrs.DefType]);
        Assert.Empty(undescribed);
        Assert.Equal(0x0606_0606_0606_0606UL, msrs[Mtrrs.Fix64K00000]);
        Assert.Equal(0UL, msrs[Mtrrs.Fix16KA0000]);               // the VGA window
        for (uint m = Mtrrs.Fix4KC0000; m <= Mtrrs.Fix4KF8000; m++) Assert.Equal(0x0606_0606_0606_0606UL, msrs[m]);
        // The default type is written last, so the ranges are in place when the MTRRs switch on.
        Assert.Equal(Mtrrs.DefType, Mtrrs.Plan(Platform, KvmMtrrCap, 40, out _)[^1].Index);
    }

    [Theory]
    [InlineData(0x0000_0000UL, Mtrrs.WriteBack)]
    [InlineData(0xBFFF_F000UL, Mtrrs.WriteBack)]            // the last page of 3 GiB of low RAM
    [InlineData(0xC000_0000UL, Mtrrs.Uncacheable)]          // 32-bit PCI window
    [InlineData(0xE000_0000UL, Mtrrs.Uncacheable)]          // ECAM
    [InlineData(0xFEE0_0000UL, Mtrrs.Uncacheable)]          // LAPIC
    [InlineData(0xFFFF_F000UL, Mtrrs.Uncacheable)]
    [InlineData(0x1_0000_0000UL, Mtrrs.Uncacheable)]        // 64-bit PCI window (no RAM above 4 GiB here)
    [InlineData(0x8_FFFF_F000UL, Mtrrs.Uncacheable)]
    [InlineData(0x9_0000_0000UL, Mtrrs.WriteBack)]           // past the window
    public void EveryAddress_GetsTheTypeOfItsRange(ulong address, int expected)
    {
        var msrs = Plan(Platform, KvmMtrrCap, 40, out _);
        Assert.Equal(expected, TypeOf(msrs, address, 40, 8));
    }

    [Fact]
    public void AWindowNotAlignedToItsSize_IsSplitIntoAlignedBlocks()
    {
        // 32 GiB from 5 GiB (1 GiB of RAM above 4 GiB): 1 + 2 + 8 + 16 + 4 + 1 GiB blocks.
        var blocks = Mtrrs.AlignedBlocks(0x1_4000_0000, 32UL << 30);
        Assert.Equal(0x1_4000_0000UL + (32UL << 30), blocks[^1].Start + blocks[^1].Size);
        Assert.All(blocks, b => Assert.Equal(0UL, b.Start % b.Size));
        Assert.All(blocks, b => Assert.Equal(0UL, b.Size & (b.Size - 1)));
        Assert.Equal(32L << 30, blocks.Sum(b => (long)b.Size));
    }

    [Fact]
    public void RangesBeyondTheVariableMtrrs_OrTheAddressWidth_AreReportedAndLeftWriteBack()
    {
        var few = Plan(Platform, 0x502, 40, out var undescribed);          // only 2 variable MTRRs
        Assert.Equal([Platform.Uncached[1]], undescribed);
        Assert.Equal(Mtrrs.Uncacheable, TypeOf(few, 0xC000_0000, 40, 2));
        Assert.Equal(Mtrrs.WriteBack, TypeOf(few, 0x1_0000_0000, 40, 2));
        Plan(Platform, KvmMtrrCap, 32, out undescribed);                    // no address above 4 GiB
        Assert.Equal([Platform.Uncached[1]], undescribed);
        Plan(new X86MemoryTypes([new(0xC000_0800, 0x1000)]), KvmMtrrCap, 40, out undescribed);   // not page aligned
        Assert.Single(undescribed);
    }

    [Fact]
    public void WithoutFixedRangeSupport_NoFixedMtrrIsWritten_AndFixedEnableStaysOff()
    {
        var msrs = Plan(Platform, 0x08, 40, out _);
        Assert.DoesNotContain(Mtrrs.Fix64K00000, msrs.Keys);
        Assert.Equal(0x806UL, msrs[Mtrrs.DefType]);
    }

    [Fact]
    public void UnusedVariableMtrrs_AreWrittenInvalid()
    {
        var msrs = Plan(new X86MemoryTypes([new(0xC000_0000, 0x4000_0000)]), KvmMtrrCap, 40, out _);
        Assert.Equal(0xC000_0000UL | Mtrrs.Uncacheable, msrs[Mtrrs.PhysBase0]);
        Assert.Equal(0xFF_C000_0800UL, msrs[Mtrrs.PhysBase0 + 1]);          // 1 GiB mask, valid
        for (uint i = 1; i < 8; i++) Assert.Equal(0UL, msrs[Mtrrs.PhysBase0 + 2 * i + 1]);
    }

    private static KvmCpuidEntry2[] Cpu(string vendor, bool invariantTsc)
    {
        var v = System.Text.Encoding.ASCII.GetBytes(vendor);
        return
        [
            new() { Function = 0, Eax = 0x10, Ebx = BitConverter.ToUInt32(v, 0), Edx = BitConverter.ToUInt32(v, 4), Ecx = BitConverter.ToUInt32(v, 8) },
            new() { Function = 0x8000_0007, Edx = invariantTsc ? 1u << 8 : 0 },
        ];
    }

    [Fact]
    public void InvariantTsc_OnAmd_IsWithdrawnWhenHwcrTscFreqSelCannotBeSet_AndKeptWhenItIs()
    {
        var amd = Cpu("AuthenticAMD", invariantTsc: true);
        Assert.True(InvariantTsc.NeedsTscFreqSel(amd));
        Assert.False(InvariantTsc.Advertised(InvariantTsc.Reconcile(amd, msrAgrees: false)));
        Assert.True(InvariantTsc.Advertised(InvariantTsc.Reconcile(amd, msrAgrees: true)));
        Assert.True(InvariantTsc.Advertised(amd));                            // the input is not changed
    }

    [Fact]
    public void InvariantTsc_OnIntel_DoesNotDependOnHwcr()
    {
        var intel = Cpu("GenuineIntel", invariantTsc: true);
        Assert.False(InvariantTsc.NeedsTscFreqSel(intel));
        Assert.True(InvariantTsc.Advertised(InvariantTsc.Reconcile(intel, msrAgrees: false)));
    }
}
