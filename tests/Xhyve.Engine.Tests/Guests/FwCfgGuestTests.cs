using System.Text;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.FwCfg;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Memory;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>The fwcfg guest reads the fw_cfg device through its I/O ports and DMA: under the engine it must see
/// exactly the items <see cref="FwCfgContent"/> builds, and under QEMU the same structure.</summary>
public sealed class FwCfgGuestTests
{
    /// <summary>What the guest reports about structure and semantics; machine-specific contents (file list, e820) are left out.</summary>
    private static readonly string[] Structural =
    [
        "sig_io", "id_io", "dma_sig", "sig_dma_status", "sig_dma", "id_dma", "dir_dma_status", "dir_io_dma_same", "dir_sorted",
        "dir_selectors_ascending", "dir_reserved_zero", "dir_names_terminated", "e820_dma_status", "e820_io_dma_same", "e820_has_ram",
        "skip_status", "skip_then_io_ok", "outside_ram_status", "write_status", "sig_after_write", "unknown_io", "unknown_dma_status", "unknown_dma",
    ];

    private static IReadOnlyList<string> Files(EngineRun run) =>
        Enumerable.Range(0, int.Parse(run.Results["dir_count"])).Select(i => run.Results[$"file_{i}"]).ToList();

    /// <summary>The items the engine should serve for RunGuest's command line (hostbridge, LPC, default memory).</summary>
    private static (IReadOnlyList<string> Files, byte[] E820) Expected(bool acpi)
    {
        using var memory = new GuestMemory(X86Layout.RamRegions(VmSpecification.DefaultMemory));
        var spec = new VmSpecification
        {
            Acpi = acpi,
            PciDevices = [new PciDeviceSpec(new PciAddress(0, 0, 0), "hostbridge", null), new PciDeviceSpec(new PciAddress(0, 31, 0), "lpc", null)],
        };
        var platform = new PlatformDescription { Vcpus = 1, HasLpc = true, LowMemoryBytes = VmSpecification.DefaultMemory, PciSlots = [(0, 0), (0, 31)] };
        using var items = FwCfgContent.Build(spec, memory, acpi ? AcpiTables.Build(platform) : null,
            SmbiosTables.Build(platform, spec.EffectiveUuid, spec.Name, PlatformLayout.SmbiosEntryPoint));
        return (items.Files.Select(f => f.Name).ToList(), FwCfgContent.E820(memory));
    }

    private static string Fnv1a(byte[] data)
    {
        uint h = 2166136261;
        foreach (var b in data) h = (h ^ b) * 16777619;
        return $"0x{h:x8}";
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Guest_ReadsTheEnginesItems_IdenticallyThroughIoAndDma(bool acpi)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("fwcfg", extra: acpi ? ["-A"] : []);
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        var (files, e820) = Expected(acpi);
        Assert.Equal("QEMU", r["sig_io"]);
        Assert.Equal("QEMU", r["sig_dma"]);
        Assert.Equal("0x00000003", r["id_io"]);
        Assert.Equal("0x00000003", r["id_dma"]);
        Assert.Equal("QEMU CFG", r["dma_sig"]);
        Assert.Equal(files, Files(run));
        foreach (var key in new[] { "dir_io_dma_same", "dir_sorted", "dir_selectors_ascending", "dir_reserved_zero", "dir_names_terminated", "e820_io_dma_same", "skip_then_io_ok" })
            Assert.True(r[key] == "1", $"{key}\n{run}");
        Assert.Equal(e820.Length.ToString(), r["e820_size"]);
        Assert.Equal(Fnv1a(e820), r["e820_hash"]);
        Assert.Equal("0x00000001", r["outside_ram_status"]);
        Assert.Equal("0x00000001", r["write_status"]);
        Assert.Equal("QEMU", r["sig_after_write"]);
        Assert.Equal("0x00000000", r["unknown_io"]);
        Assert.Equal("0x00000000", r["unknown_dma"]);
    }

    /// <summary>The cross-check against a fw_cfg nobody here wrote: QEMU's, with the guest as a multiboot -kernel.</summary>
    [SkippableFact]
    public void SameGuestUnderQemu_ReportsTheSameStructure_AndSharesTheFirmwareFiles()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.If(FindOnPath("qemu-system-x86_64") == null, "qemu-system-x86_64 is absent (scripts/setup-debian.sh installs it): no cross-check");
        var qemu = EngineProcess.RunProgram("qemu-system-x86_64", ["-enable-kvm", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
            "-serial", "stdio", "-kernel", EngineProcess.Guest("fwcfg")], timeoutSeconds: 120);
        Assert.True(qemu.Done, qemu.ToString());
        var run = EngineProcess.RunGuest("fwcfg", extra: ["-A"]);
        Assert.True(run.Done, run.ToString());
        foreach (var key in Structural)
            Assert.True(run.Results.TryGetValue(key, out var v) && qemu.Results.TryGetValue(key, out var q) && v == q,
                $"{key}: ours {(run.Results.TryGetValue(key, out var x) ? x : "(missing)")}, QEMU {(qemu.Results.TryGetValue(key, out var y) ? y : "(missing)")}\n{run}\n{qemu}");
        // The files SeaBIOS and OVMF read for memory, ACPI and SMBIOS are in both directories.
        string[] shared = ["bootorder", "etc/acpi/rsdp", "etc/acpi/tables", "etc/e820", "etc/smbios/smbios-anchor", "etc/smbios/smbios-tables", "etc/table-loader"];
        Assert.Subset(Files(qemu).ToHashSet(), shared.ToHashSet());
        Assert.Subset(Files(run).ToHashSet(), shared.ToHashSet());
    }

    private static string? FindOnPath(string program) => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);
}
