using System.Text.RegularExpressions;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Firmware;

/// <summary>The DSDT's control methods (_PIC, _PRT, the PCI interrupt links, _OSC) run by ACPICA's own
/// interpreter (acpiexec from acpica-tools), the way an OS evaluates them.</summary>
public sealed class DsdtMethodTests
{
    private static readonly PlatformDescription Platform = new()
    {
        Vcpus = 2, HasLpc = true, LowMemoryBytes = 1UL << 30, PciSlots = [(0, 0), (0, 3), (0, 31)],
    };

    /// <summary>A table the tests load beside the DSDT: _PRT's entries one at a time (acpiexec's result buffer is too
    /// small for the whole PIC-mode table, whose link references it expands).</summary>
    private const string Probe = """
        DefinitionBlock ("", "SSDT", 2, "XHYVE", "PROBE", 1)
        {
            External (\_SB.PCI0._PRT, MethodObj)
            External (\_SB.PC01._PRT, MethodObj)
            Method (PRTN) { Local0 = \_SB.PCI0._PRT () Return (SizeOf (Local0)) }
            Method (PRTE, 1) { Local0 = \_SB.PCI0._PRT () Return (DerefOf (Local0 [Arg0])) }
            Method (PRT1, 1) { Local0 = \_SB.PC01._PRT () Return (DerefOf (Local0 [Arg0])) }
        }
        """;

    /// <summary>Runs acpiexec in batch mode on the DSDT (and the probe table) with the given commands; returns its output.</summary>
    private static string Exec(byte[] dsdt, params string[] commands)
    {
        string dir = Directory.CreateTempSubdirectory("acpiexec").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "dsdt.aml"), dsdt);
            File.WriteAllText(Path.Combine(dir, "probe.asl"), Probe);
            var compiled = HostTools.Run("iasl", "probe.asl", workingDirectory: dir);
            Assert.True(compiled.ExitCode == 0, compiled.Stdout + compiled.Stderr);
            var (code, stdout, stderr) = HostTools.Run("acpiexec", $"-b \"{string.Join("; ", commands)}\" dsdt.aml probe.aml", workingDirectory: dir);
            string output = stdout + stderr;
            Assert.True(code == 0, $"acpiexec failed ({code}):\n{output}");
            Assert.DoesNotMatch(@"ACPI (Error|Exception)|AE_[A-Z_]+ ", output);
            return output;
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Every _PRT entry (address, pin, source, index) in the interrupt model <paramref name="picMode"/> selects.
    /// Read 32 at a time: acpiexec takes at most 1023 characters of commands.</summary>
    private static List<string[]> Prt(byte[] dsdt, bool picMode)
    {
        string model = $"evaluate \\_PIC {(picMode ? 0 : 1)}";
        Assert.Contains("[Integer] = 0000000000000080", Section(Exec(dsdt, model, "evaluate \\PRTN"), "\\PRTN"));
        var entries = new List<string[]>();
        for (int first = 0; first < 128; first += 32)
        {
            string output = Exec(dsdt, [model, .. Enumerable.Range(first, 32).Select(i => $"evaluate \\PRTE {i}")]);
            entries.AddRange(Enumerable.Range(0, 32).Select(i => PrtEntries(Section(output, "\\PRTE", i)).Single()));
        }
        return entries;
    }

    /// <summary>The output of one "evaluate" in acpiexec's log: from "Evaluating NAME" to the next "Evaluating".</summary>
    private static string Section(string output, string path, int occurrence = 0)
    {
        var starts = Regex.Matches(output, $@"^Evaluating {Regex.Escape(path)}\r?$", RegexOptions.Multiline);
        Assert.True(starts.Count > occurrence, $"no evaluation of {path} in:\n{output}");
        int from = starts[occurrence].Index + starts[occurrence].Length;
        int next = output.IndexOf("\nEvaluating ", from, StringComparison.Ordinal);
        return output[from..(next < 0 ? output.Length : next)];
    }

    /// <summary>The bytes of a [Buffer] result as acpiexec dumps it ("0000: 05 00 ...").</summary>
    private static byte[] BufferOf(string section) =>
        Regex.Matches(section, @"\b[0-9A-F]{4}: ((?:[0-9A-F]{2} )+)")
            .SelectMany(m => m.Groups[1].Value.Trim().Split(' ')).Select(h => Convert.ToByte(h, 16)).ToArray();

    /// <summary>The four values of each _PRT entry (address, pin, source, index) in an evaluation's package dump.</summary>
    private static List<string[]> PrtEntries(string section) =>
        Regex.Matches(section, @"\[Package\] Contains 4 Elements:\s*\n\s*\[Integer\] = (?<a>[0-9A-F]+)\s*\n\s*\[Integer\] = (?<p>[0-9A-F]+)\s*\n\s*(?<s>\[[^\n]+)\n\s*\[Integer\] = (?<i>[0-9A-F]+)")
            .Select(m => new[] { m.Groups["a"].Value, m.Groups["p"].Value, m.Groups["s"].Value.Trim(), m.Groups["i"].Value }).ToList();

    [Fact]
    public void Prt_InApicMode_GivesEachSlotPinItsGsi()
    {
        var entries = Prt(AcpiTables.Dsdt(Platform), picMode: false);
        Assert.Equal(128, entries.Count);
        foreach (var e in entries)
        {
            int slot = (int)(Convert.ToUInt64(e[0], 16) >> 16), pin = Convert.ToInt32(e[1], 16);
            Assert.Equal("[Integer] = 0000000000000000", e[2]);
            Assert.Equal(PlatformLayout.PciGsi(slot, pin), Convert.ToInt32(e[3], 16));
        }
    }

    [Fact]
    public void Prt_InPicMode_NamesTheLinkDeviceOfThatGsi_WhoseOnlyIrqIsThePicInputTheGsiDrives()
    {
        var dsdt = AcpiTables.Dsdt(Platform);
        var entries = Prt(dsdt, picMode: true);
        Assert.Equal(128, entries.Count);
        foreach (var e in entries)
        {
            int slot = (int)(Convert.ToUInt64(e[0], 16) >> 16), pin = Convert.ToInt32(e[1], 16);
            string link = AcpiTables.LinkName(PlatformLayout.PciGsi(slot, pin) - PlatformLayout.FirstPciGsi);
            Assert.Matches($@"^\[Object Reference\] = 0x[0-9a-f]+ <Node>\s+Name {link} Device$", e[2]);
            Assert.Equal(0, Convert.ToInt32(e[3], 16));
        }
        // Each link: PNP0C0F, _PRS and _CRS the one 8259 input its GSI is wired to, as a level-triggered shared
        // Extended Interrupt descriptor; _SRS/_DIS change only what _STA reports.
        for (int i = 0; i < PlatformLayout.PciGsiCount; i++)
        {
            string link = $"\\_SB.{AcpiTables.LinkName(i)}";
            int irq = PlatformLayout.PciPicIrq(PlatformLayout.FirstPciGsi + i);
            byte[] expected = [0x89, 0x06, 0x00, 0x09, 0x01, (byte)irq, 0, 0, 0, 0x79, 0x00];
            string run = Exec(dsdt, $"evaluate {link}._HID", $"evaluate {link}._PRS", $"evaluate {link}._CRS", $"evaluate {link}._STA",
                $"evaluate {link}._DIS", $"evaluate {link}._STA", $"evaluate {link}._SRS ({string.Join(' ', expected.Select(b => b.ToString("X2")))})", $"evaluate {link}._STA");
            Assert.Contains("[Integer] = 000000000F0CD041", Section(run, $"{link}._HID"));   // EisaId ("PNP0C0F")
            Assert.Equal(expected, BufferOf(Section(run, $"{link}._PRS")));
            Assert.Equal(expected, BufferOf(Section(run, $"{link}._CRS")));
            Assert.Contains("[Integer] = 000000000000000B", Section(run, $"{link}._STA", 0));
            Assert.Contains("[Integer] = 0000000000000009", Section(run, $"{link}._STA", 1));
            Assert.Contains("[Integer] = 000000000000000B", Section(run, $"{link}._STA", 2));
        }
    }

    [Fact]
    public void SecondRootBus_RoutesThroughTheSameTables_InBothModes()
    {
        var allocator = new Xhyve.Vmm.Devices.Pci.PciResourceAllocator(PlatformLayout.Mmio64Start(0));
        allocator.BeginBus(0);
        allocator.BeginBus(1);
        var dsdt = AcpiTables.Dsdt(Platform with { PciBuses = allocator.Finish() });
        string[] Entry(string model, int i) => PrtEntries(Section(Exec(dsdt, $"evaluate \\_PIC {model}", $"evaluate \\PRT1 {i}"), "\\PRT1")).Single();
        // Slot 5 INTB (entry 21) is GSI 16 + 6 = 22: LNKG in PIC mode, 22 in APIC mode.
        Assert.Matches(@"Name LNKG Device$", Entry("0", 21)[2]);
        Assert.Equal(22, Convert.ToInt32(Entry("1", 21)[3], 16));
    }

    /// <summary>Evaluates _OSC on PCI0 with the arguments Linux passes and returns the three result dwords.</summary>
    private static uint[] Osc(byte[] uuid, int revision, uint cdw1, uint cdw2, uint cdw3)
    {
        byte[] capabilities = [.. BitConverter.GetBytes(cdw1), .. BitConverter.GetBytes(cdw2), .. BitConverter.GetBytes(cdw3)];
        string Hex(byte[] b) => string.Join(' ', b.Select(x => x.ToString("X2")));
        string output = Exec(AcpiTables.Dsdt(Platform), $"evaluate \\_SB.PCI0._OSC ({Hex(uuid)}) {revision} 3 ({Hex(capabilities)})");
        byte[] result = BufferOf(Section(output, "\\_SB.PCI0._OSC"));
        Assert.Equal(12, result.Length);
        return [BitConverter.ToUInt32(result, 0), BitConverter.ToUInt32(result, 4), BitConverter.ToUInt32(result, 8)];
    }

    [Fact]
    public void Osc_GrantsPmeAerAndThePcieCapability_ButNotHotPlug_AndSaysItMaskedTheRest()
    {
        byte[] uuid = AcpiTables.PciHostBridgeOsc.ToByteArray();
        // What Linux asks with CONFIG_PCIEPORTBUS: hot plug, SHPC, PME, AER, PCIe capability, LTR, DPC (0x1BF).
        var asked = Osc(uuid, 1, 0x1, 0x1F, 0x1BF);
        Assert.Equal(0x1u | 0x10u, asked[0]);                 // query bit kept; capabilities masked
        Assert.Equal(0x1Fu, asked[1]);                        // support dword untouched
        Assert.Equal(0x1Cu, asked[2]);                        // PME | AER | PCIe capability
        // Asking for exactly what was granted succeeds without the masked bit.
        var granted = Osc(uuid, 1, 0x0, 0x1F, 0x1C);
        Assert.Equal([0x0u, 0x1Fu, 0x1Cu], granted);
    }

    [Fact]
    public void Osc_FlagsAnUnknownUuid_AndAnUnknownRevision()
    {
        var otherUuid = Osc(Guid.Parse("0811B06E-4A27-44F9-8D60-3CBBC22E7B48").ToByteArray(), 1, 0x0, 0, 0x1C);
        Assert.Equal(0x4u, otherUuid[0] & 0xE);
        var otherRevision = Osc(AcpiTables.PciHostBridgeOsc.ToByteArray(), 2, 0x0, 0x1F, 0x1C);
        Assert.Equal(0x8u, otherRevision[0] & 0xE);
    }

    [Theory]
    [InlineData(31, 0)]
    [InlineData(1, 0)]
    [InlineData(7, 3)]
    public void Lpc_AdrFollowsItsSlotAndFunction(int slot, int function)
    {
        string output = Exec(AcpiTables.Dsdt(Platform with { LpcSlot = slot, LpcFunction = function }), "evaluate \\_SB.PCI0.ISA._ADR");
        uint expected = ((uint)slot << 16) | (uint)function;
        Assert.Contains($"[Integer] = {(ulong)expected:X16}", Section(output, "\\_SB.PCI0.ISA._ADR"));
    }
}
