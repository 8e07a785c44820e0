using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Boot;

public sealed class BootLayoutTests
{
    [Fact]
    public void E820_SmallVm_HasConventionalRamReservedBiosAreasAndHighRam()
    {
        using var mem = new GuestMemory(X86Layout.RamRegions(256UL << 20));
        var map = E820Map.Build(mem);
        Assert.Equal(
            [
                new E820Entry(0, 0x9FC00, E820Type.Ram),
                new E820Entry(0x9FC00, 0x400, E820Type.Reserved),
                new E820Entry(0xE0000, 0x20000, E820Type.Reserved),
                new E820Entry(0x100000, (256UL << 20) - 0x100000, E820Type.Ram),
                new E820Entry(0xE000_0000, 0x1000_0000, E820Type.Reserved),     // ECAM, 256 buses
                new E820Entry(0xFEC0_0000, 0x1000, E820Type.Reserved),          // IOAPIC
                new E820Entry(0xFED0_0000, 0x1000, E820Type.Reserved),          // HPET
                new E820Entry(0xFEE0_0000, 0x1000, E820Type.Reserved),          // LAPIC
                new E820Entry(0xFEFF_C000, 0x4000, E820Type.Reserved),          // KVM identity map + TSS, merged
            ], map);
    }

    [Theory]
    [InlineData(64UL << 20)]
    [InlineData(3UL << 30)]
    [InlineData(3200UL << 20)]
    [InlineData(6UL << 30)]
    public void E820_ReservesTheDeviceWindows_SortedDisjoint_AndNeverOverRam(ulong bytes)
    {
        var regions = X86Layout.RamRegions(bytes);
        var map = E820Map.Build(new FakeRegions(regions));

        for (int i = 1; i < map.Count; i++)
            Assert.True(map[i - 1].End <= map[i].Address, $"{map[i - 1]} and {map[i]} are unsorted or overlap");
        foreach (var (start, size) in new[] { (0xE000_0000UL, 0x1000_0000UL), (X86Layout.IoapicBase, 0x1000UL),
                     (0xFED0_0000UL, 0x1000UL), (X86Layout.LapicBase, 0x1000UL), (0xFEFF_C000UL, 0x4000UL) })
            Assert.Contains(map, e => e.Type == E820Type.Reserved && e.Address <= start && start + size <= e.End);
        foreach (var e in map.Where(e => e.Type != E820Type.Ram))
            Assert.DoesNotContain(regions, r => e.Address < r.End && r.Start.Value < e.End && e.Address >= X86Layout.HighMemoryStart);
        // All RAM is still listed as RAM.
        Assert.Equal(bytes - (X86Layout.HighMemoryStart - X86Layout.EbdaStart),
            map.Where(e => e.Type == E820Type.Ram).Aggregate(0UL, (sum, e) => sum + e.Size));
    }

    [Fact]
    public void E820_DropsTheParts_OfAReservationThatRamCovers()
    {
        // A layout with RAM over the ECAM window and the IOAPIC page: RAM stays RAM, the rest stays reserved.
        var regions = new[] { new MemoryRegion(new GuestAddress(0), 0xE800_0000), new MemoryRegion(new GuestAddress(0xFEC0_0000), 0x1000) };
        var map = E820Map.Build(new FakeRegions(regions));
        Assert.Contains(new E820Entry(0x100000, 0xE800_0000 - 0x100000, E820Type.Ram), map);
        Assert.Contains(new E820Entry(0xE800_0000, 0x0800_0000, E820Type.Reserved), map);
        Assert.Contains(new E820Entry(0xFEC0_0000, 0x1000, E820Type.Ram), map);
        Assert.DoesNotContain(map, e => e.Type == E820Type.Reserved && e.Address < 0xE800_0000 && e.End > X86Layout.HighMemoryStart);
        Assert.DoesNotContain(map, e => e.Type == E820Type.Reserved && e.Address == 0xFEC0_0000);
    }

    [Fact]
    public void KvmPrivatePages_InTheLayout_AreTheOnesTheKvmBackendSets()
    {
        Assert.Equal(Xhyve.Vmm.Hypervisor.Kvm.KvmVm.IdentityMapAddress, X86Layout.KvmIdentityMapAddress);
        Assert.Equal(Xhyve.Vmm.Hypervisor.Kvm.KvmVm.TssAddress, X86Layout.KvmTssAddress);
        Assert.Equal(X86Layout.KvmIdentityMapAddress + 0x1000, X86Layout.KvmTssAddress);  // one merged e820 entry
    }

    [Fact]
    public void E820_LargeVm_ListsRamAbove4GiB_AndNothingInThePciHole()
    {
        var regions = X86Layout.RamRegions(6UL << 30);
        var mem = new FakeRegions(regions);
        var map = E820Map.Build(mem);
        Assert.Equal(new E820Entry(0x100000, (3UL << 30) - 0x100000, E820Type.Ram), map[3]);
        Assert.Equal(new E820Entry(4UL << 30, 3UL << 30, E820Type.Ram), map[^1]);
        Assert.DoesNotContain(map, e => e.Type == E820Type.Ram && e.Address < 4UL << 30 && e.End > 3UL << 30);
    }

    /// <summary>Regions without host memory, for layout-only tests of big VMs.</summary>
    private sealed class FakeRegions(IReadOnlyList<MemoryRegion> regions) : IGuestMemory
    {
        public ulong Size => (ulong)regions.Sum(r => (long)r.Size);
        public IReadOnlyList<MemoryRegion> Regions => regions;
        public bool TryGetSpan(GuestAddress address, int length, out Span<byte> span) { span = default; return false; }
        public bool TryRead(GuestAddress address, Span<byte> destination) => false;
        public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source) => false;
    }

    [Fact]
    public void E820Entry_IsWrittenAs20LittleEndianBytes()
    {
        var b = new byte[20];
        E820Map.Write(b, new E820Entry(0x1_0000_0000, 0x2000, E820Type.Reserved));
        Assert.Equal(0x1_0000_0000UL, BinaryPrimitives.ReadUInt64LittleEndian(b));
        Assert.Equal(0x2000UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(8)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16)));
    }

    [Fact]
    public void IdentityMap_Translates_Every2MiBPageBelow4GiB_ToItself()
    {
        var image = PageTables.BuildIdentityMap4G();
        ulong Entry(ulong tableAddress, int index) =>
            BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan((int)(tableAddress - X86Layout.Pml4) + index * 8));
        foreach (ulong va in new ulong[] { 0, 0x1000, 0x100200, 0x3FFF_FFFF, 0x4000_0000, 0xC000_0000, 0xFEE0_0000, 0xFFFF_FFFF })
        {
            ulong pml4e = Entry(X86Layout.Pml4, (int)(va >> 39 & 511));
            Assert.Equal(3UL, pml4e & 3);
            ulong pdpte = Entry(pml4e & ~0xFFFUL, (int)(va >> 30 & 511));
            Assert.Equal(3UL, pdpte & 3);
            ulong pde = Entry(pdpte & ~0xFFFUL, (int)(va >> 21 & 511));
            Assert.Equal(0x83UL, pde & 0x83);                     // present, writable, 2 MiB page
            Assert.Equal(va, (pde & ~0x1FFFFFUL & 0x000F_FFFF_FFFF_F000) | (va & 0x1FFFFF));
        }
    }

    [Fact]
    public void LinuxGdt_HasBootCsAt0x10_AndBootDsAt0x18()
    {
        // __BOOT_CS: 64-bit code (L=1), __BOOT_DS: writable data, both present DPL 0.
        Assert.Equal(1UL, PageTables.LinuxGdt[2] >> 53 & 1);
        Assert.Equal(0x9BUL, PageTables.LinuxGdt[2] >> 40 & 0xFF);
        Assert.Equal(0x93UL, PageTables.LinuxGdt[3] >> 40 & 0xFF);
    }

    [Fact]
    public void Long64EntryState_EnablesPagingAndLongMode_WithRsiAtZeroPage()
    {
        var s = EntryState.Long64(0x1000000, X86Layout.ZeroPage);
        Assert.Equal(0x1000000UL, s.Rip);
        Assert.Equal(X86Layout.ZeroPage, s.Rsi);
        Assert.Equal(X86Layout.Pml4, s.Cr3);
        Assert.NotEqual(0UL, s.Cr0 & 0x8000_0001);
        Assert.Equal(0x20UL, s.Cr4 & 0x20);
        Assert.Equal(0x500UL, s.Efer & 0x500);
        Assert.True(s.Cs.Long);
        Assert.Equal(0x10, s.Cs.Selector);
        Assert.Equal(0x18, s.Ds.Selector);
        Assert.Equal(11, s.Tr.Type);
    }

    [Fact]
    public void Protected32EntryState_IsFlatWithoutPaging()
    {
        var s = EntryState.Protected32(0x100010, MultibootLoader.BootloaderMagic, 0x9000);
        Assert.Equal(0x2BAD_B002UL, s.Rax);
        Assert.Equal(0x9000UL, s.Rbx);
        Assert.Equal(1UL, s.Cr0 & 0x8000_0001);
        Assert.Equal(0UL, s.Efer);
        Assert.True(s.Cs.Default32);
        Assert.False(s.Cs.Long);
    }

    [Fact]
    public void KernelCommandLine_RejectsControlCharacters_AndOverlongText()
    {
        Assert.Throws<BootImageException>(() => new KernelCommandLine("console=ttyS0\n", 100));
        var e = Assert.Throws<BootImageException>(() => new KernelCommandLine(new string('a', 11), 10));
        Assert.Contains("11", e.Message);
        Assert.Equal("a b\0"u8.ToArray(), new KernelCommandLine("a b", 10).ToBytes());
    }

    [Fact]
    public void BootParams_CarriesCommandLineRamdiskAndE820()
    {
        var bp = new BootParams(null);
        bp.SetCommandLine(0x20000);
        bp.SetRamdisk(0x1_2345_6000, 0x1000);
        bp.SetE820([new E820Entry(0, 0x9FC00, E820Type.Ram), new E820Entry(0x100000, 0x1000000, E820Type.Ram)]);
        var p = bp.Bytes;
        Assert.Equal(0xAA55, BinaryPrimitives.ReadUInt16LittleEndian(p[0x1FE..]));
        Assert.Equal(0x53726448u, BinaryPrimitives.ReadUInt32LittleEndian(p[0x202..]));
        Assert.Equal(0xFF, p[0x210]);
        Assert.Equal(0x20000u, BinaryPrimitives.ReadUInt32LittleEndian(p[0x228..]));
        Assert.Equal(0x2345_6000u, BinaryPrimitives.ReadUInt32LittleEndian(p[0x218..]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(p[0x0C0..]));
        Assert.Equal(0x1000u, BinaryPrimitives.ReadUInt32LittleEndian(p[0x21C..]));
        Assert.Equal(2, p[0x1E8]);
        Assert.Equal(0x100000UL, BinaryPrimitives.ReadUInt64LittleEndian(p[(0x2D0 + 20)..]));
    }
}
