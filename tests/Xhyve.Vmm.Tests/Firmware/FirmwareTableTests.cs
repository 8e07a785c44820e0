using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Firmware;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Firmware;

public sealed class FirmwareTableTests
{
    private static readonly PlatformDescription Platform = new()
    {
        Vcpus = 4, HasLpc = true, LowMemoryBytes = 3UL << 30, HighMemoryBytes = 1UL << 30, PciSlots = [(0, 0), (0, 31)],
    };

    private static Dictionary<string, PlacedTable> Tables(PlatformDescription? p = null) =>
        AcpiTables.Build(p ?? Platform).ToDictionary(t => t.Signature);

    [Fact]
    public void EveryTable_SumsToZero_AndCarriesItsLength()
    {
        foreach (var t in AcpiTables.Build(Platform).Where(t => t.Signature is not ("FACS" or "RSD PTR ")))
        {
            Assert.True(Checksum.IsValid(t.Bytes), $"{t.Signature} checksum");
            Assert.Equal(t.Bytes.Length, (int)BinaryPrimitives.ReadUInt32LittleEndian(t.Bytes.AsSpan(4)));
            Assert.Equal(t.Signature, Encoding.ASCII.GetString(t.Bytes, 0, 4));
        }
    }

    [Fact]
    public void Rsdp_ChecksumsAndPointers_AreConsistent()
    {
        var tables = Tables();
        var rsdp = tables["RSD PTR "];
        Assert.Equal(PlatformLayout.Rsdp, rsdp.Address);
        Assert.True(Checksum.IsValid(rsdp.Bytes.AsSpan(0, 20)));
        Assert.True(Checksum.IsValid(rsdp.Bytes));
        Assert.Equal(tables["XSDT"].Address, BinaryPrimitives.ReadUInt64LittleEndian(rsdp.Bytes.AsSpan(24)));
        Assert.Equal(tables["RSDT"].Address, BinaryPrimitives.ReadUInt32LittleEndian(rsdp.Bytes.AsSpan(16)));
    }

    [Fact]
    public void Xsdt_ListsFadtMadtHpetAndMcfg()
    {
        var tables = Tables();
        var xsdt = tables["XSDT"].Bytes;
        var listed = Enumerable.Range(0, (xsdt.Length - 36) / 8).Select(i => BinaryPrimitives.ReadUInt64LittleEndian(xsdt.AsSpan(36 + 8 * i))).ToArray();
        Assert.Equal(new[] { "FACP", "APIC", "HPET", "MCFG" }.Select(s => tables[s].Address), listed);
    }

    [Fact]
    public void Fadt_PointsAtFacsDsdtAndThePmBlocks()
    {
        var tables = Tables();
        var f = tables["FACP"].Bytes;
        Assert.Equal(276, f.Length);
        Assert.Equal(tables["FACS"].Address, BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(132)));
        Assert.Equal(tables["DSDT"].Address, BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(140)));
        Assert.Equal(9, BinaryPrimitives.ReadUInt16LittleEndian(f.AsSpan(46)));
        Assert.Equal(0x400u, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(56)));
        Assert.Equal(0x404u, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(64)));
        Assert.Equal(0x408u, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(76)));
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(112));
        Assert.Equal(0u, flags & (1 << 4));        // power button is a fixed feature
        Assert.NotEqual(0u, flags & (1 << 10));    // reset register supported
        Assert.Equal(0xCF9UL, BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(120)));
        Assert.Equal(6, f[128]);
        Assert.Equal(0u, tables["FACS"].Address % 64);
    }

    [Theory]
    [InlineData(false, 0, 8)]
    [InlineData(true, 9, 16)]
    public void Madt_HasOneApicEntryPerVcpu(bool x2apic, byte type, int length)
    {
        var madt = Tables(Platform with { X2Apic = x2apic })["APIC"].Bytes;
        var entries = new List<(byte Type, int Offset)>();
        for (int at = 44; at < madt.Length; at += madt[at + 1]) entries.Add((madt[at], at));
        var cpus = entries.Where(e => e.Type == type).ToList();
        Assert.Equal(4, cpus.Count);
        Assert.All(cpus, c => Assert.Equal(length, madt[c.Offset + 1]));
        Assert.Single(entries, e => e.Type == 1);                              // IOAPIC
        var iso = Assert.Single(entries, e => e.Type == 2);
        Assert.Equal(9, madt[iso.Offset + 3]);                                  // SCI override
    }

    [Fact]
    public void Mcfg_DescribesEcamForBuses0To255()
    {
        var m = Tables()["MCFG"].Bytes;
        Assert.Equal(60, m.Length);
        Assert.Equal(PlatformLayout.EcamBase, BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan(44)));
        Assert.Equal(255, m[55]);
    }

    /// <summary>The ECAM window the MCFG table describes: (first byte, length), read from the table bytes.</summary>
    private static (ulong Start, ulong Length) McfgWindow(byte[] mcfg)
    {
        Assert.Equal(60, mcfg.Length);                                           // exactly one allocation
        ulong baseAddress = BinaryPrimitives.ReadUInt64LittleEndian(mcfg.AsSpan(44));
        int startBus = mcfg[54], endBus = mcfg[55];
        return (baseAddress + ((ulong)startBus << 20), (ulong)(endBus - startBus + 1) << 20);
    }

    /// <summary>Disassembles a DSDT with iasl and returns the (base, length) of every Memory32Fixed in the
    /// _CRS of each PNP0C02 device.</summary>
    private static List<(ulong Start, ulong Length)> MotherboardRanges(byte[] dsdt, out string dsl)
    {
        string dir = Directory.CreateTempSubdirectory("acpi-mb").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "dsdt.dat"), dsdt);
            var (code, stdout, stderr) = HostTools.Run("iasl", "-d dsdt.dat", workingDirectory: dir);
            Assert.True(code == 0, stdout + stderr);
            Assert.DoesNotContain("Error", stdout + stderr);
            dsl = File.ReadAllText(Path.Combine(dir, "dsdt.dsl"));
        }
        finally { Directory.Delete(dir, true); }

        var ranges = new List<(ulong, ulong)>();
        // Each "Device (X) { ... }" whose body names PNP0C02; iasl indents the closing brace like the opening line.
        foreach (Match device in Regex.Matches(dsl, @"^(?<indent>[ ]*)Device \((?<name>\w+)\)\s*\n\k<indent>\{(?<body>.*?)\n\k<indent>\}", RegexOptions.Multiline | RegexOptions.Singleline))
        {
            string body = device.Groups["body"].Value;
            if (!body.Contains("EisaId (\"PNP0C02\")")) continue;
            Assert.Contains("Name (_UID", body);
            foreach (Match m in Regex.Matches(body, @"Memory32Fixed \(ReadWrite,\s*0x(?<base>[0-9A-F]+),\s*// Address Base\s*0x(?<len>[0-9A-F]+),\s*// Address Length"))
                ranges.Add((Convert.ToUInt64(m.Groups["base"].Value, 16), Convert.ToUInt64(m.Groups["len"].Value, 16)));
        }
        return ranges;
    }

    [Fact]
    public void Dsdt_HasAMotherboardDevice_ReservingExactlyTheMcfgWindow()
    {
        var tables = Tables();
        var window = McfgWindow(tables["MCFG"].Bytes);
        Assert.Equal((PlatformLayout.EcamBase, PlatformLayout.EcamSize), window);
        var ranges = MotherboardRanges(tables["DSDT"].Bytes, out string dsl);
        Assert.Contains("Device (MRES)", dsl);
        Assert.Equal([window], ranges);
    }

    [Fact]
    public void TwoRootBuses_ShrinkTheMcfgWindow_AndTheMotherboardRangeWithIt()
    {
        var allocator = new Xhyve.Vmm.Devices.Pci.PciResourceAllocator(PlatformLayout.Mmio64Start(0));
        allocator.BeginBus(0);
        allocator.BeginBus(1);
        var platform = Platform with { PciBuses = allocator.Finish() };
        var tables = Tables(platform);
        foreach (var t in tables.Values.Where(t => t.Signature is not ("FACS" or "RSD PTR ")))
            Assert.True(Checksum.IsValid(t.Bytes), $"{t.Signature} checksum");
        var window = McfgWindow(tables["MCFG"].Bytes);
        Assert.Equal((PlatformLayout.EcamBase, 2UL << 20), window);           // buses 0 and 1
        Assert.Equal([window], MotherboardRanges(tables["DSDT"].Bytes, out _));
    }

    [Fact]
    public void McfgWindow_IsAlsoReservedInE820()
    {
        // Linux accepts MMCONFIG if either the e820 map or a motherboard device reserves it; we do both.
        var window = McfgWindow(Tables()["MCFG"].Bytes);
        using var mem = new Xhyve.Vmm.Memory.GuestMemory(X86Layout.RamRegions(64UL << 20));
        Assert.Contains(E820Map.Build(mem), e => e.Type == E820Type.Reserved && e.Address <= window.Start && window.Start + window.Length <= e.End);
    }

    [Fact]
    public void MpTable_ChecksumsAndListsEveryCpu()
    {
        var t = MpTable.Build(Platform, PlatformLayout.MpFloatingPointer);
        Assert.Equal("_MP_"u8.ToArray(), t[..4]);
        Assert.True(Checksum.IsValid(t.AsSpan(0, 16)));
        int length = BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(20));
        Assert.True(Checksum.IsValid(t.AsSpan(16, length)));
        Assert.Equal(PlatformLayout.MpFloatingPointer + 16, BinaryPrimitives.ReadUInt32LittleEndian(t.AsSpan(4)));
        int processors = 0, at = 16 + 44;
        while (at < 16 + length)
        {
            byte type = t[at];
            if (type == 0) processors++;
            at += type == 0 ? 20 : 8;
        }
        Assert.Equal(4, processors);
        Assert.Equal(16 + length, at);
    }

    /// <summary>Walks the SMBIOS structure table as a guest would: formatted area, then strings to a double NUL.</summary>
    [Fact]
    public void Smbios_EntryPointAndStructureWalk()
    {
        var uuid = Guid.Parse("8a5a6f0b-1f0e-4c5e-9d2a-3d3a6f1b2c4d");
        var t = SmbiosTables.Build(Platform, uuid, "web", PlatformLayout.SmbiosEntryPoint);
        Assert.Equal("_SM_"u8.ToArray(), t[..4]);
        Assert.True(Checksum.IsValid(t.AsSpan(0, 31)));
        Assert.True(Checksum.IsValid(t.AsSpan(16, 15)));
        int tableLength = BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(22));
        int count = BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(28));
        var types = new List<byte>();
        int at = 32;
        byte[]? system = null;
        while (at < 32 + tableLength)
        {
            byte type = t[at], length = t[at + 1];
            if (type == 1) system = t[at..(at + length)];
            types.Add(type);
            int s = at + length;
            while (!(t[s] == 0 && t[s + 1] == 0)) s++;
            at = s + 2;
        }
        Assert.Equal(32 + tableLength, at);
        Assert.Equal(count, types.Count);
        Assert.Equal(new byte[] { 0, 1, 3, 4, 4, 4, 4, 16, 17, 19, 19, 32, 127 }, types);
        Assert.Equal(uuid.ToByteArray(), system![8..24]);
    }

    [Fact]
    public void DefaultUuid_IsStablePerNameAndHost()
    {
        Assert.Equal(SmbiosTables.DefaultUuid("web", "h1"), SmbiosTables.DefaultUuid("web", "h1"));
        Assert.NotEqual(SmbiosTables.DefaultUuid("web", "h1"), SmbiosTables.DefaultUuid("db", "h1"));
        Assert.NotEqual(SmbiosTables.DefaultUuid("web", "h1"), SmbiosTables.DefaultUuid("web", "h2"));
        Assert.Equal(8, SmbiosTables.DefaultUuid("web", "h1").Version);
        Assert.Equal(0x80, SmbiosTables.DefaultUuid("web", "h1").ToByteArray(bigEndian: true)[8] & 0xC0);
    }

    [Fact]
    public void TwoRootBuses_GetTwoHostBridges_WithDisjointWindows_AndTwoMpPciBuses()
    {
        var allocator = new Xhyve.Vmm.Devices.Pci.PciResourceAllocator(PlatformLayout.Mmio64Start(0));
        allocator.BeginBus(0);
        allocator.BeginBus(1);
        var buses = allocator.Finish();
        Assert.Equal([0, 1], buses.Select(b => b.Bus));
        Assert.True(buses[0].Mmio32End < buses[1].Mmio32Start && buses[0].IoEnd < buses[1].IoStart && buses[0].Mmio64End < buses[1].Mmio64Start);
        Assert.Equal(PlatformLayout.Mmio32End, buses[1].Mmio32End);
        var platform = Platform with { PciBuses = buses, PciSlots = [(0, 0), (0, 31), (1, 5)] };

        string dir = Directory.CreateTempSubdirectory("acpi2").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "dsdt.dat"), AcpiTables.Dsdt(platform));
            var (code, stdout, stderr) = HostTools.Run("iasl", "-d dsdt.dat", workingDirectory: dir);
            Assert.True(code == 0, stdout + stderr);
            string dsl = File.ReadAllText(Path.Combine(dir, "dsdt.dsl"));
            Assert.Contains("Device (PCI0)", dsl);
            Assert.Contains("Device (PC01)", dsl);
            Assert.Contains("Name (_BBN, One)", dsl);
        }
        finally { Directory.Delete(dir, true); }

        var mp = MpTable.Build(platform, PlatformLayout.MpFloatingPointer);
        int pciBuses = 0;
        for (int at = 60; at < mp.Length; at += mp[at] == 0 ? 20 : 8)
            if (mp[at] == 1 && mp[at + 2] == (byte)'P') pciBuses++;
        Assert.Equal(2, pciBuses);
    }

    /// <summary>The real tool: every table dumped and disassembled by iasl (acpica-tools) without errors,
    /// and the DSDT decompiling to the devices it must describe.</summary>
    [Fact]
    public void Iasl_DisassemblesEveryTable_WithoutErrors()
    {
        string dir = Directory.CreateTempSubdirectory("acpi").FullName;
        try
        {
            foreach (var t in AcpiTables.Build(Platform).Where(t => t.Signature != "RSD PTR "))
                File.WriteAllBytes(Path.Combine(dir, t.Signature.ToLowerInvariant() + ".dat"), t.Bytes);
            foreach (var file in Directory.GetFiles(dir, "*.dat"))
            {
                var (code, stdout, stderr) = HostTools.Run("iasl", $"-d '{file}'", workingDirectory: dir);
                Assert.True(code == 0, $"iasl -d {Path.GetFileName(file)} failed:\n{stdout}\n{stderr}");
                Assert.DoesNotContain("Error", stdout + stderr);
            }
            string dsdt = File.ReadAllText(Path.Combine(dir, "dsdt.dsl"));
            foreach (var expected in new[] { "Device (PCI0)", "EisaId (\"PNP0A08\")", "Method (_PRT, 0", "Name (PRTA, Package (0x80)", "Name (PRTP, Package (0x80)", "Return (\\_SB.PRTP)", "Method (_OSC, 4", "Method (\\_PIC, 1", "Device (LNKA)", "Device (LNKH)", "EisaId (\"PNP0C0F\")", "Device (COM1)", "Device (COM2)",
                         "EisaId (\"PNP0501\")", "Device (RTC)", "EisaId (\"PNP0B00\")", "Device (HPET)", "0xFED00000", "Device (KBC)", "_S5, Package (0x04)",
                         "WordBusNumber", "DWordMemory", "QWordMemory", "Device (MRES)", "EisaId (\"PNP0C02\")" })
                Assert.Contains(expected, dsdt);
            string fadt = File.ReadAllText(Path.Combine(dir, "facp.dsl"));
            Assert.Contains("PM1A Event Block Address : 00000400", fadt);
        }
        finally { Directory.Delete(dir, true); }
    }
}
