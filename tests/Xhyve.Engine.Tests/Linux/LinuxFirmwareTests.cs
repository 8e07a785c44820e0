namespace Xhyve.Engine.Tests.Linux;

/// <summary>One boot with one vCPU, `noapic` and -W: Linux routes PCI INTx through the 8259 (PIC mode), so it calls
/// \_PIC(0), reads _PRT's interrupt links and programs them, and virtio-blk (INTx only with -W) must then work on an
/// XT-PIC line. The same boot's log shows what Linux made of the rest of the firmware: MMCONFIG, PAT, the TSC, _OSC.</summary>
public sealed class FirmwareBoot : LinuxBootFixture
{
    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string disk = Path.Combine(dir, "disk.img");
        File.WriteAllBytes(disk, new byte[4 << 20]);
        var spec = new LinuxBootSpec("""
            dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null && mark disk_read ok
            grep virtio /proc/interrupts | while read -r line; do mark irq "$line"; done
            dmesg | grep -o 'Interrupt link LNK. configured for IRQ [0-9]*' | while read -r line; do mark link "$line"; done
            mark mmconfig "$(dmesg | grep -o 'MMCONFIG at \[mem [^]]*\] .*')"
            mark mmconfig_claim "$(dmesg | grep -o 'system [0-9a-f:]*: \[mem 0xe0000000-0x[0-9a-f]*\] has been reserved')"
            mark pat "$(dmesg | grep -o 'x86/PAT: .*')"
            mark tsc_bug "$(dmesg | grep -c "TSC doesn't count")"
            mark tsc_flags "$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'constant_tsc|nonstop_tsc' | tr '\n' ' ')"
            mark osc "$(dmesg | grep -o '_OSC: .*' | tr '\n' '|')"
            mark acpi_errors "$(dmesg | grep -ciE 'ACPI (BIOS )?(Error|Warning)|AE_NOT_FOUND')"
            mark done ok
            poweroff -f
            """)
        {
            Cpus = 1,
            ExtraKernelParameters = "noapic",
            EngineArgs = ["-W", "-s", $"3,virtio-blk,{disk}"],
        };
        return LinuxHarness.Boot(kernel, dir, spec);
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxFirmwareTests(FirmwareBoot boot) : IClassFixture<FirmwareBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Noapic_VirtioIntxArrivesThroughThe8259_ViaTheAcpiInterruptLinks(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("ok", run.Marker("disk_read"));
        // Every link is configured for the one 8259 input its GSI drives.
        var links = run.All("link");
        Assert.Equal(Vmm.Firmware.Acpi.PlatformLayout.PciGsiCount, links.Count);
        for (int i = 0; i < links.Count; i++)
            Assert.Equal($"Interrupt link LNK{(char)('A' + i)} configured for IRQ {Vmm.Firmware.Acpi.PlatformLayout.PciPicIrqs[i]}", links[i]);
        // Slot 3 INTA is GSI 16 + 3 = 19, which the platform wires to 8259 input 10 (LNKD).
        string virtio = run.All("irq").SingleOrDefault() ?? throw new Xunit.Sdk.XunitException(run.Describe());
        Assert.Matches(@"^\s*10:.*XT-PIC.*virtio", virtio);
        Assert.True(LinuxHarness.InterruptCount(virtio) > 0, $"no interrupts on: {virtio}");
        run.AssertExit(0);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Mmconfig_IsReservedInE820AndClaimedByAMotherboardDevice_SoLinuxUsesIt(string kernel)
    {
        var run = boot.Run(kernel);
        // "reserved in E820" (or "as ACPI motherboard resource"): Linux accepted the ECAM window; else it says "not reserved".
        Assert.Matches(@"^MMCONFIG at \[mem 0xe0000000-0xefffffff\] reserved (in E820|as ACPI motherboard resource)", run.Marker("mmconfig"));
        Assert.Matches(@"^system [0-9a-f:]+: \[mem 0xe0000000-0xefffffff\] has been reserved$", run.Marker("mmconfig_claim"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Firmware_LeavesNoTscFirmwareBug_PatAsTheKernelIsBuilt_AnOscAndNoAcpiErrors(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.True(run.Marker("tsc_bug") == "0", $"Linux reported \"TSC doesn't count with P0 frequency\" (TSC flags: {run.Marker("tsc_flags")})");
        // PAT needs MTRRs enabled by firmware (and a kernel with CONFIG_X86_PAT): the write-combining layout. The
        // test kernel is built without it and prints the fallback layout, which has no WC.
        var config = LinuxKernels.Find(kernel, out _)!;
        Assert.Equal(config.Has("X86_PAT") ? "x86/PAT: Configuration [0-7]: WB  WC  UC- UC  WB  WP  UC- WT" : "x86/PAT: Configuration [0-7]: WB  WT  UC- UC  WB  WT  UC- UC",
            run.Marker("pat").TrimEnd());
        // _OSC is there and answered (no AE_NOT_FOUND); a kernel without PCIe port services asks for no control.
        Assert.Contains("_OSC: OS supports", run.Marker("osc"));
        if (config.Has("PCIEPORTBUS")) Assert.Contains("_OSC: OS now controls [PME AER PCIeCapability]", run.Marker("osc"));
        Assert.Equal("0", run.Marker("acpi_errors"));
    }
}
