using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>Issue 15: a boot ROM's checks, where it is mapped (read-only, ending at 4 GiB), its low copy below 1 MiB,
/// the MMIO window that drops writes, and the reset-vector state the BSP starts in.</summary>
public sealed class BootRomTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bootrom").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A ROM file whose every 4-byte word holds its own offset, so any misplaced byte shows.</summary>
    private string Rom(int size, string name = "rom.bin")
    {
        var bytes = new byte[size];
        for (int i = 0; i + 4 <= size; i += 4) BitConverter.TryWriteBytes(bytes.AsSpan(i), i ^ 0x5A5A5A5A);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void ResetVectorState_IsRealModeAtF000FFF0_WithCsBaseFFFF0000_AndCr0AfterReset()
    {
        var s = EntryState.ResetVector();
        Assert.Equal(0xFFF0UL, s.Rip);
        Assert.Equal((ushort)0xF000, s.Cs.Selector);
        Assert.Equal(0xFFFF_0000UL, s.Cs.Base);
        Assert.Equal(0xFFFFu, s.Cs.Limit);
        Assert.Equal(X86Layout.ResetVector, s.Cs.Base + s.Rip);
        Assert.Equal(0x6000_0010UL, s.Cr0);             // CD | NW | ET, PE clear: real mode
        Assert.Equal(0UL, s.Cr4);
        Assert.Equal(0UL, s.Efer);
        Assert.Equal(2UL, s.Rflags);
        Assert.True(s.Cs is { Present: true, CodeOrData: true, Default32: false, Long: false, Granularity4K: false, Type: 0xB });
        foreach (var d in new[] { s.Ds, s.Es, s.Fs, s.Gs, s.Ss })
            Assert.True(d is { Selector: 0, Base: 0, Limit: 0xFFFF, Present: true, CodeOrData: true, Default32: false, Type: 0x3 }, $"{d.Selector} {d.Base} {d.Limit}");
        Assert.Equal((ushort)0xFFFF, s.IdtLimit);
        Assert.Equal(0UL, s.IdtBase);
    }

    [Theory]
    [InlineData(128 * 1024)]          // SeaBIOS bios.bin
    [InlineData(256 * 1024)]          // SeaBIOS bios-256k.bin
    [InlineData(0x37C000)]            // OVMF_CODE_4M.fd: pages, not 64 KiB blocks
    [InlineData(16 * 1024 * 1024)]    // the most
    public void Rom_IsMappedReadOnly_EndingAt4GiB_InItsOwnSlot_WithTheFilesBytes(int size)
    {
        string path = Rom(size);
        using var rom = BootRom.Load(path);
        using var ram = new GuestMemory(X86Layout.RamRegions(4UL << 20));
        var vm = new RecordingVirtualMachine();
        var mmio = new DeviceBus("MMIO");

        var loaded = rom.MapInto(vm, VmBuilder.BootRomSlot, mmio, ram);

        var map = Assert.Single(vm.Mappings);
        Assert.Equal(VmBuilder.BootRomSlot, map.Slot);
        Assert.True(map.ReadOnly, "the ROM was mapped writable");
        Assert.Equal((ulong)size, map.Size);
        Assert.Equal(X86Layout.FourGiB - (ulong)size, map.GuestAddress);
        Assert.Equal(File.ReadAllBytes(path), map.Contents);
        // The host memory is the ROM's own, not guest RAM's (no device can DMA into it).
        Assert.Equal(rom.HostAddress, map.HostAddress);
        Assert.False(ram.TryGetSpan(new GuestAddress(map.GuestAddress), 1, out _));
        Assert.Contains(mmio.Ranges, r => r.Start == map.GuestAddress && r.Length == (ulong)size && r.Name == "boot ROM");
        Assert.Equal(EntryState.ResetVector().Cs.Base, loaded.EntryState.Cs.Base);
        Assert.Equal(EntryState.ResetVector().Rip, loaded.EntryState.Rip);
        Assert.Contains(path, loaded.Description);
    }

    [Theory]
    [InlineData(0x37C000, 0xC0000)]   // OVMF: its last 256 KiB
    [InlineData(256 * 1024, 0xC0000)] // SeaBIOS's 256 KiB build has code from 0xD2720
    [InlineData(128 * 1024, 0xE0000)]
    [InlineData(64 * 1024, 0xF0000)]  // a small ROM still ends at 1 MiB
    public void LowCopy_IsTheRomsLast256KiB_EndingAt1MiB_InWritableRam(int size, ulong expectedStart)
    {
        string path = Rom(size);
        byte[] file = File.ReadAllBytes(path);
        using var rom = BootRom.Load(path);
        using var ram = new GuestMemory(X86Layout.RamRegions(4UL << 20));
        ram.WriteExactly(new GuestAddress(0xA0000), Enumerable.Repeat((byte)0xCC, 0x60000).ToArray());

        rom.MapInto(new RecordingVirtualMachine(), VmBuilder.BootRomSlot, new DeviceBus("MMIO"), ram);

        Assert.Equal(expectedStart, rom.LowCopyAddress);
        int copied = (int)(0x100000 - expectedStart);
        var low = new byte[copied];
        ram.ReadExactly(new GuestAddress(expectedStart), low);
        Assert.Equal(file.AsSpan(size - copied).ToArray(), low);
        // Below the copy RAM is untouched; the copy stays writable RAM (a BIOS shadows itself there).
        var below = new byte[16];
        ram.ReadExactly(new GuestAddress(expectedStart - 16), below);
        Assert.All(below, b => Assert.Equal(0xCC, b));
        Assert.True(ram.TryWrite(new GuestAddress(0xFFFF0), [1, 2, 3]));
    }

    [Fact]
    public void RomWindow_DropsGuestWrites_AndServesReadsFromTheRom()
    {
        string path = Rom(64 * 1024);
        using var rom = BootRom.Load(path);
        using var ram = new GuestMemory(X86Layout.RamRegions(4UL << 20));
        var mmio = new DeviceBus("MMIO");
        rom.MapInto(new RecordingVirtualMachine(), VmBuilder.BootRomSlot, mmio, ram);
        ulong reset = X86Layout.ResetVector;

        Assert.True(mmio.Write(reset, [0x90, 0x90, 0x90, 0x90]));
        var read = new byte[4];
        Assert.True(mmio.Read(reset, read));
        Assert.Equal(File.ReadAllBytes(path).AsSpan(64 * 1024 - 16, 4).ToArray(), read);
        Assert.Equal(File.ReadAllBytes(path), rom.Bytes.ToArray());
    }

    [Fact]
    public void BadRomFiles_AreRefused_NamingTheFileAndTheProblem()
    {
        string empty = Path.Combine(_dir, "empty.bin");
        File.WriteAllBytes(empty, []);
        string odd = Rom(64 * 1024 + 512, "odd.bin");
        string huge = Path.Combine(_dir, "huge.bin");
        using (var f = File.Create(huge)) f.SetLength((16L << 20) + 4096);   // sparse: no 16 MiB written
        string missing = Path.Combine(_dir, "missing.bin");

        Assert.Equal($"bootrom: ROM {empty}: file is empty", BootRom.Problem(empty));
        Assert.Equal($"bootrom: ROM {odd}: 66048 bytes is not a multiple of 4 KiB (a ROM image is mapped in whole pages)", BootRom.Problem(odd));
        Assert.Equal($"bootrom: ROM {huge}: {(16L << 20) + 4096} bytes is larger than the 16 MiB a boot ROM may have below 4 GiB", BootRom.Problem(huge));
        Assert.Equal($"bootrom: ROM {missing}: file not found", BootRom.Problem(missing));
        Assert.Equal($"bootrom: ROM {_dir}: is a directory", BootRom.Problem(_dir));
        Assert.Equal("bootrom: no ROM path given", BootRom.Problem(""));
        Assert.Null(BootRom.Problem(Rom(4096, "ok.bin")));
        var e = Assert.Throws<BootImageException>(() => BootRom.Load(odd));
        Assert.Equal(BootRom.Problem(odd), e.Message);
    }

    [Fact]
    public void Validation_ReportsTheRomsProblem_ForBothSpellingsOfTheFlag()
    {
        string empty = Path.Combine(_dir, "empty.bin");
        File.WriteAllBytes(empty, []);
        foreach (var flag in new[] { "-f", "-l" })
        {
            var spec = CommandLineParser.Parse([flag, "bootrom," + empty]).Spec;
            Assert.Equal([$"bootrom: ROM {empty}: file is empty"], spec.Validate());
        }
        var good = CommandLineParser.Parse(["-l", "bootrom," + Rom(128 * 1024)]).Spec;
        Assert.Empty(good.Validate());
        // A line checked away from the machine it will run on leaves the file alone.
        Assert.Empty(CommandLineParser.Parse(["-l", "bootrom," + empty]).Spec.Validate(checkFiles: false));
    }

    private sealed class NoEvents : IPlatformEvents
    {
        public void RequestStop(VmExitStatus status, string reason) { }
    }

    [Fact]
    public void Builder_StartsTheBspAtTheResetVector_LeavesApsWaiting_AndWritesNoTablesOverTheRomCopy()
    {
        string path = Rom(128 * 1024);
        // -A would put the ACPI tables (and SMBIOS, the MP table) into 0xE0000-0xFFFFF for a loaded kernel.
        var spec = CommandLineParser.Parse(["-A", "-c", "2", "-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", $"bootrom,{path}"]).Spec;
        var hypervisor = new RecordingHypervisor();
        using var machine = new VmBuilder(spec, hypervisor, new NoEvents()).Build();

        var vm = Assert.Single(hypervisor.Vms);
        Assert.Contains(vm.Mappings, m => m is { Slot: 0, GuestAddress: 0, ReadOnly: false });
        var romMap = Assert.Single(vm.Mappings, m => m.ReadOnly);
        Assert.Equal((VmBuilder.BootRomSlot, 0xFFFE_0000UL, 128UL * 1024), (romMap.Slot, romMap.GuestAddress, romMap.Size));
        var bsp = vm.Vcpus[0].BootState;
        Assert.NotNull(bsp);
        Assert.Equal((0xFFFF_0000UL, 0xFFF0UL), (bsp.Value.Cs.Base, bsp.Value.Rip));
        Assert.Null(vm.Vcpus[1].BootState);   // APs wait for the firmware's INIT/SIPI
        Assert.All(vm.Vcpus, v => Assert.Null(v.MemoryTypes));   // MTRRs off, as a CPU leaves reset: the firmware sets them
        var low = new byte[0x20000];
        machine.Memory.ReadExactly(new GuestAddress(0xE0000), low);
        Assert.True(File.ReadAllBytes(path).AsSpan().SequenceEqual(low), "0xE0000-0xFFFFF is not the ROM's copy (tables written over it?)");
        Assert.NotNull(machine.Rom);
        Assert.Contains("boot ROM", machine.Kernel.Description);
        Assert.Contains(machine.Mmio.Ranges, r => r.Start == 0xFFFE_0000 && r.Name == "boot ROM");
    }

    /// <summary>-l bootrom,CODE,VARS: the variable store is a CFI flash just below the ROM, read from a read-only slot
    /// in read-array mode; a command the guest writes there takes the slot away so reads reach the device (status),
    /// read-array maps it again, and a programmed byte lands in the file.</summary>
    [Fact]
    public void Builder_PutsTheVariableStoreFlashBelowTheRom_SwitchesItsSlotWithTheMode_AndWritesThroughToTheFile()
    {
        string rom = Rom(256 * 1024);
        string vars = Path.Combine(_dir, "vars.fd");
        File.WriteAllBytes(vars, Enumerable.Repeat((byte)0xFF, 128 * 1024).ToArray());
        var spec = CommandLineParser.Parse(["-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", $"bootrom,{rom},{vars}"]).Spec;
        var hypervisor = new RecordingHypervisor();
        using (var machine = new VmBuilder(spec, hypervisor, new NoEvents()).Build())
        {
            var vm = Assert.Single(hypervisor.Vms);
            const ulong window = 0x1_0000_0000UL - 256 * 1024 - 128 * 1024;
            var flash = Assert.Single(vm.Mappings, m => m.Slot == VmBuilder.FlashSlot);
            Assert.Equal((window, 128UL * 1024, true), (flash.GuestAddress, flash.Size, flash.ReadOnly));
            Assert.Contains(machine.Mmio.Ranges, r => r.Start == window && r.Length == 128 * 1024);

            Assert.True(machine.Mmio.Write(window, [0x70]));                  // read status: the window must exit now
            Assert.Equal([VmBuilder.FlashSlot], vm.Unmapped);
            var status = new byte[1];
            Assert.True(machine.Mmio.Read(window, status));
            Assert.Equal(0x80, status[0]);                                    // ready
            Assert.True(machine.Mmio.Write(window + 0x10, [0x10]));           // program one byte...
            Assert.True(machine.Mmio.Write(window + 0x10, [0x42]));
            Assert.True(machine.Mmio.Write(window, [0xFF]));                  // ...and back to read-array: mapped again
            Assert.Equal(2, vm.Mappings.Count(m => m.Slot == VmBuilder.FlashSlot));
        }
        Assert.Equal(0x42, File.ReadAllBytes(vars)[0x10]);
    }

    [Fact]
    public void KvmPrivatePages_LieBelowTheLargestRom()
    {
        Assert.True(X86Layout.KvmPrivatePagesEnd <= X86Layout.FourGiB - X86Layout.BootRomMaxSize,
            $"KVM's TSS/identity-map pages end at 0x{X86Layout.KvmPrivatePagesEnd:X}, inside the top 16 MiB a ROM may use");
    }
}
