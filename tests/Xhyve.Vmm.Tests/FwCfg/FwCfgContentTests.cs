using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.FwCfg;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Firmware;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.FwCfg;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.FwCfg;

/// <summary>What <see cref="FwCfgContent"/> serves, read back through the device's ports as firmware would, and the
/// table loader executed as firmware would.</summary>
public sealed class FwCfgContentTests : IDisposable
{
    private static readonly PlatformDescription Platform = new()
    {
        Vcpus = 4, HasLpc = true, LowMemoryBytes = 256UL << 20, HighMemoryBytes = 0, PciSlots = [(0, 0), (0, 31)],
    };

    private readonly GuestMemory _memory = new(X86Layout.RamRegions(256UL << 20));
    private readonly List<string> _temp = new();

    public void Dispose()
    {
        _memory.Dispose();
        foreach (var d in _temp) Directory.Delete(d, true);
    }

    private static VmSpecification Spec(bool acpi = true, bool lpc = true) => new()
    {
        Name = "fwcfg-test", Vcpus = 4, MemoryBytes = 256UL << 20, Acpi = acpi, Uuid = Guid.Parse("01234567-89ab-cdef-0011-223344556677"),
        PciDevices = lpc ? [new PciDeviceSpec(new PciAddress(0, 0, 0), "hostbridge", null), new PciDeviceSpec(new PciAddress(0, 31, 0), "lpc", null)]
                         : [new PciDeviceSpec(new PciAddress(0, 0, 0), "hostbridge", null)],
    };

    private FwCfgItems Items(VmSpecification spec, FwCfgKernel? kernel = null) =>
        FwCfgContent.Build(spec, _memory, spec.Acpi ? AcpiTables.Build(Platform) : null,
            SmbiosTables.Build(Platform, spec.EffectiveUuid, spec.Name, PlatformLayout.SmbiosEntryPoint), kernel, "/pci@i0cf8/isa@1f\n");

    /// <summary>Reads an item through the selector and data ports.</summary>
    private static byte[] Read(FwCfgDevice d, ushort selector, int length)
    {
        Span<byte> sel = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(sel, selector);
        d.Write(0, sel);
        var b = new byte[length];
        for (int i = 0; i < length; i++) d.Read(1, b.AsSpan(i, 1));
        return b;
    }

    private static byte[] ReadFile(FwCfgItems items, FwCfgDevice d, string name)
    {
        var f = items.Files.Single(f => f.Name == name);
        return Read(d, f.Selector, (int)f.Size);
    }

    [Fact]
    public void NumberedItems_AreQemusSignatureFeaturesUuidRamAndCpus()
    {
        using var items = Items(Spec());
        var d = new FwCfgDevice(items, _memory);
        Assert.Equal("QEMU", Encoding.ASCII.GetString(Read(d, FwCfgSelectors.Signature, 4)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(Read(d, FwCfgSelectors.Id, 4)));
        Assert.Equal(Spec().Uuid!.Value.ToByteArray(bigEndian: true), Read(d, FwCfgSelectors.Uuid, 16));
        Assert.Equal(_memory.Size, BinaryPrimitives.ReadUInt64LittleEndian(Read(d, FwCfgSelectors.RamSize, 8)));
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(Read(d, FwCfgSelectors.NbCpus, 2)));
        Assert.Equal(4, BinaryPrimitives.ReadUInt16LittleEndian(Read(d, FwCfgSelectors.MaxCpus, 2)));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(Read(d, FwCfgSelectors.BootMenu, 2)));
    }

    [Fact]
    public void E820File_ListsTheSameMapAsTheBootParams()
    {
        using var items = Items(Spec());
        var e820 = ReadFile(items, new FwCfgDevice(items, _memory), FwCfgContent.E820File);
        var expected = E820Map.Build(_memory);
        Assert.Equal(expected.Count * 20, e820.Length);
        for (int i = 0; i < expected.Count; i++)
        {
            var e = e820.AsSpan(i * 20);
            Assert.Equal(expected[i], new E820Entry(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]),
                (E820Type)BinaryPrimitives.ReadUInt32LittleEndian(e[16..])));
        }
    }

    [Fact]
    public void Files_AreTheAcpiSmbiosBootAndConsoleFiles_AndFollowTheVmsDevices()
    {
        using (var items = Items(Spec()))
        {
            Assert.Equal(new[] { "bootorder", "etc/acpi/rsdp", "etc/acpi/tables", "etc/boot-menu-wait", "etc/e820", "etc/sercon-port",
                "etc/smbios/smbios-anchor", "etc/smbios/smbios-tables", "etc/table-loader" }, items.Files.Select(f => f.Name));
            var d = new FwCfgDevice(items, _memory);
            Assert.Equal(0x3F8, BinaryPrimitives.ReadUInt16LittleEndian(ReadFile(items, d, "etc/sercon-port")));
            Assert.Equal("/pci@i0cf8/isa@1f\n", Encoding.ASCII.GetString(ReadFile(items, d, "bootorder")));
        }
        using (var items = Items(Spec(acpi: false, lpc: false)))
        {
            Assert.DoesNotContain(items.Files, f => f.Name.StartsWith("etc/acpi/") || f.Name == "etc/table-loader" || f.Name == "etc/sercon-port");
            Assert.Contains(items.Files, f => f.Name == "etc/smbios/smbios-tables");
        }
    }

    [Fact]
    public void SmbiosAnchor_IsA31ByteEntryPoint_DescribingTheTablesFile()
    {
        using var items = Items(Spec());
        var d = new FwCfgDevice(items, _memory);
        var anchor = ReadFile(items, d, SmbiosFwCfg.AnchorFile);
        var tables = ReadFile(items, d, SmbiosFwCfg.TablesFile);
        Assert.Equal(31, anchor.Length);
        Assert.Equal("_SM_", Encoding.ASCII.GetString(anchor, 0, 4));
        Assert.Equal("_DMI_", Encoding.ASCII.GetString(anchor, 16, 5));
        Assert.True(Checksum.IsValid(anchor));
        Assert.True(Checksum.IsValid(anchor.AsSpan(16, 15)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(anchor.AsSpan(24)));        // the firmware places the structures
        Assert.Equal(tables.Length, BinaryPrimitives.ReadUInt16LittleEndian(anchor.AsSpan(22)));
        // Walk the structures: their count matches the anchor's and the last is type 127.
        int count = 0, at = 0, lastType = -1;
        while (at < tables.Length)
        {
            lastType = tables[at];
            at += tables[at + 1];
            while (tables[at] != 0 || tables[at + 1] != 0) at++;
            at += 2;
            count++;
        }
        Assert.Equal(tables.Length, at);
        Assert.Equal(BinaryPrimitives.ReadUInt16LittleEndian(anchor.AsSpan(28)), count);
        Assert.Equal(127, lastType);
    }

    /// <summary>The loader script run as SeaBIOS runs it, at addresses unlike the fixed ones: every checksum is
    /// right, RSDP -> XSDT/RSDT -> FADT -> FACS/DSDT is reachable, each table equals the -A table apart from
    /// pointers and checksum, and iasl disassembles every relocated table without errors.</summary>
    [Fact]
    public void TableLoader_RunAsFirmwareWould_YieldsValidLinkedAcpiTables()
    {
        using var items = Items(Spec());
        var d = new FwCfgDevice(items, _memory);
        const ulong high = 0x0FF4_0010, fseg = 0xF_5A38;
        var run = TableLoaderRunner.Run(ReadFile(items, d, TableLoader.FileName), name => ReadFile(items, d, name), high, fseg);
        Assert.Equal([AcpiTableLoader.TablesFile, AcpiTableLoader.RsdpFile], run.Loaded.Keys);

        var original = AcpiTables.Build(Platform).ToDictionary(t => t.Signature);
        ulong rsdpAddress = run.Loaded[AcpiTableLoader.RsdpFile].Address;
        Assert.Equal(0UL, rsdpAddress % 16);
        Assert.InRange(rsdpAddress, 0xE_0000UL, 0xF_FFFFUL);
        var rsdp = run.At(rsdpAddress, 36);
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(rsdp, 0, 8));
        Assert.True(Checksum.IsValid(rsdp.AsSpan(0, 20)), "RSDP checksum");
        Assert.True(Checksum.IsValid(rsdp), "RSDP extended checksum");

        byte[] Table(ulong address, string signature)
        {
            var header = run.At(address, 36);
            Assert.Equal(signature, Encoding.ASCII.GetString(header, 0, 4));
            var t = run.At(address, (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)));
            if (signature != "FACS") Assert.True(Checksum.IsValid(t), $"{signature} checksum");
            Assert.Equal(original[signature].Bytes.Length, t.Length);
            return t;
        }

        var xsdt = Table(BinaryPrimitives.ReadUInt64LittleEndian(rsdp.AsSpan(24)), "XSDT");
        var rsdt = Table(BinaryPrimitives.ReadUInt32LittleEndian(rsdp.AsSpan(16)), "RSDT");
        var listed = Enumerable.Range(0, (xsdt.Length - 36) / 8).Select(i => BinaryPrimitives.ReadUInt64LittleEndian(xsdt.AsSpan(36 + 8 * i))).ToArray();
        Assert.Equal(listed, Enumerable.Range(0, (rsdt.Length - 36) / 4).Select(i => (ulong)BinaryPrimitives.ReadUInt32LittleEndian(rsdt.AsSpan(36 + 4 * i))));
        var described = listed.Select(a => Encoding.ASCII.GetString(run.At(a, 4))).ToArray();
        Assert.Equal(original["XSDT"].Bytes.Length, xsdt.Length);
        foreach (var (address, sig) in listed.Zip(described)) Table(address, sig);

        var fadt = Table(listed[Array.IndexOf(described, "FACP")], "FACP");
        ulong facs = BinaryPrimitives.ReadUInt64LittleEndian(fadt.AsSpan(132)), dsdt = BinaryPrimitives.ReadUInt64LittleEndian(fadt.AsSpan(140));
        Assert.Equal(facs, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(36)));
        Assert.Equal(dsdt, BinaryPrimitives.ReadUInt32LittleEndian(fadt.AsSpan(40)));
        Assert.Equal(0UL, facs % 64);
        Table(facs, "FACS");
        // Pointer-free tables arrive byte for byte; those with pointers differ only in them and the checksum.
        Assert.Equal(original["DSDT"].Bytes, Table(dsdt, "DSDT"));
        foreach (var (address, sig) in listed.Zip(described).Where(x => x.Second != "FACP"))
            Assert.Equal(original[sig].Bytes, Table(address, sig));
        var fadtExpected = (byte[])original["FACP"].Bytes.Clone();
        foreach (var (at, size) in new[] { (36, 4), (40, 4), (132, 8), (140, 8), (9, 1) })
            fadt.AsSpan(at, size).CopyTo(fadtExpected.AsSpan(at));
        Assert.Equal(fadtExpected, fadt);

        string dir = Directory.CreateTempSubdirectory("fwcfg-acpi").FullName;
        _temp.Add(dir);
        foreach (var (address, sig) in listed.Zip(described).Append((dsdt, "DSDT")).Append((BinaryPrimitives.ReadUInt64LittleEndian(rsdp.AsSpan(24)), "XSDT")))
        {
            var t = run.At(address, (int)BinaryPrimitives.ReadUInt32LittleEndian(run.At(address + 4, 4)));
            File.WriteAllBytes(Path.Combine(dir, sig.ToLowerInvariant() + ".dat"), t);
        }
        foreach (var file in Directory.GetFiles(dir, "*.dat"))
        {
            var (code, stdout, stderr) = HostTools.Run("iasl", $"-d '{file}'", workingDirectory: dir);
            Assert.True(code == 0, $"iasl -d {Path.GetFileName(file)} failed:\n{stdout}\n{stderr}");
            Assert.DoesNotContain("Error", stdout + stderr);
        }
        Assert.Contains($"{dsdt:X16}", File.ReadAllText(Path.Combine(dir, "facp.dsl")));
    }

    [Fact]
    public void TableLoader_AllocatesThenPoints_ThenChecksums()
    {
        var loader = new TableLoader();
        AcpiTableLoader.Build(AcpiTables.Build(Platform), loader);
        var kinds = Enumerable.Range(0, loader.Count).Select(i => BinaryPrimitives.ReadUInt32LittleEndian(loader.ToArray().AsSpan(i * 128))).ToArray();
        Assert.Equal([1u, 1u], kinds[..2]);
        int firstChecksum = Array.IndexOf(kinds, 3u);
        Assert.All(kinds[2..firstChecksum], k => Assert.Equal(2u, k));
        Assert.All(kinds[firstChecksum..], k => Assert.Equal(3u, k));
        // 4 FADT pointers, 4 XSDT and 4 RSDT entries, 2 in the RSDP.
        Assert.Equal(14, firstChecksum - 2);
    }

    [Fact]
    public void KernelItems_SplitABzImageIntoSetupAndKernel_WithQemusLoaderFields()
    {
        string dir = Directory.CreateTempSubdirectory("fwcfg-kernel").FullName;
        _temp.Add(dir);
        var image = new byte[5 * 512 + 3000];
        new Random(5).NextBytes(image);
        image[0x1F1] = 4;                                                  // 4 setup sectors + the boot sector
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(0x1FE), 0xAA55);
        "HdrS"u8.CopyTo(image.AsSpan(0x202));
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(0x206), 0x020F);
        image[0x211] = 0x01;                                               // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x22C), 0x7FFF_FFFF);
        File.WriteAllBytes(Path.Combine(dir, "bzImage"), image);
        var initrd = Enumerable.Range(0, 10_000).Select(i => (byte)i).ToArray();
        File.WriteAllBytes(Path.Combine(dir, "initrd"), initrd);

        using var items = Items(Spec(), new FwCfgKernel(Path.Combine(dir, "bzImage"), Path.Combine(dir, "initrd"), "console=ttyS0"));
        var d = new FwCfgDevice(items, _memory);
        uint U32(ushort s) => BinaryPrimitives.ReadUInt32LittleEndian(Read(d, s, 4));
        Assert.Equal(5u * 512, U32(FwCfgSelectors.SetupSize));
        Assert.Equal(3000u, U32(FwCfgSelectors.KernelSize));
        Assert.Equal(image[(5 * 512)..], Read(d, FwCfgSelectors.KernelData, 3000));
        Assert.Equal((uint)initrd.Length, U32(FwCfgSelectors.InitrdSize));
        Assert.Equal(initrd, Read(d, FwCfgSelectors.InitrdData, initrd.Length));
        uint initrdAt = U32(FwCfgSelectors.InitrdAddress);
        Assert.Equal(0u, initrdAt % 4096);
        Assert.True(initrdAt + initrd.Length < 256u << 20, "initrd below the top of RAM");
        Assert.Equal("console=ttyS0\0", Encoding.ASCII.GetString(Read(d, FwCfgSelectors.CommandLineData, 14)));
        Assert.Equal(14u, U32(FwCfgSelectors.CommandLineSize));
        var setup = Read(d, FwCfgSelectors.SetupData, 5 * 512);
        Assert.Equal(FwCfgContent.CommandLineAddress, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x228)));
        Assert.Equal(initrdAt, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x218)));
        Assert.Equal((uint)initrd.Length, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x21C)));
        Assert.Equal(0xB0, setup[0x210]);
        Assert.Equal(0x81, setup[0x211]);
        Assert.Equal(image[..0x210], setup[..0x210]);
    }

    [Fact]
    public void KernelItems_AnInitrdTooLargeForLowRam_IsLeftOut_WhileTheKernelIsServed()
    {
        string dir = Directory.CreateTempSubdirectory("fwcfg-initrd").FullName;
        _temp.Add(dir);
        File.WriteAllBytes(Path.Combine(dir, "vmlinux"), new byte[4096]);
        using (var f = File.Create(Path.Combine(dir, "initrd"))) f.SetLength(300L << 20);   // sparse: more than the VM's 256 MiB
        using var items = Items(Spec(), new FwCfgKernel(Path.Combine(dir, "vmlinux"), Path.Combine(dir, "initrd"), null));
        var d = new FwCfgDevice(items, _memory);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(Read(d, FwCfgSelectors.InitrdAddress, 4)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(Read(d, FwCfgSelectors.InitrdSize, 4)));   // unknown selectors read 0
        // Not a bzImage: served whole as the kernel, without setup items.
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32LittleEndian(Read(d, FwCfgSelectors.KernelSize, 4)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(Read(d, FwCfgSelectors.SetupSize, 4)));
    }

    [Fact]
    public void KernelItems_ForAMissingFile_NameTheFile()
    {
        var e = Assert.Throws<BootImageException>(() => Items(Spec(), new FwCfgKernel("/nonexistent/vmlinuz", null, null)));
        Assert.Contains("/nonexistent/vmlinuz", e.Message);
    }
}
