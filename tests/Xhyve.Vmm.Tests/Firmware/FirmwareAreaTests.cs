using System.Buffers.Binary;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Firmware;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Firmware;

/// <summary>Issue 11, item 5: the MP table, ACPI tables and SMBIOS stay inside their areas below 1 MiB
/// for every vCPU count KVM allows here (up to 1024) and any --name, or the configuration is refused.</summary>
public sealed class FirmwareAreaTests
{
    private static PlatformDescription Platform(int vcpus, bool x2apic = false) => new()
    {
        Vcpus = vcpus, X2Apic = x2apic, HasLpc = true, LowMemoryBytes = 3UL << 30, HighMemoryBytes = 1UL << 30,
        PciSlots = [(0, 0), (0, 2), (0, 3), (0, 31)],
    };

    private static readonly string LongName = new('n', 70_000);

    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(150)]
    [InlineData(190)]
    [InlineData(254)]
    public void MpTableSize_IsTheBuiltLength(int vcpus)
    {
        var p = Platform(vcpus);
        Assert.Equal(MpTable.Build(p, PlatformLayout.MpFloatingPointer).Length, MpTable.Size(p));
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(64, true)]
    [InlineData(174, true)]    // 60 + 20 x 174 + 8 x 2 + 8 + 120 + 32 x 4 + 16 = 3,828 of 3,840 bytes
    [InlineData(175, false)]
    [InlineData(190, false)]
    [InlineData(255, false)]
    [InlineData(256, false)]
    [InlineData(1024, false)]
    public void MpTable_IsBuiltOnlyWhenItFitsItsArea_OtherwiseLeftOutWithAReason(int vcpus, bool kept)
    {
        var p = Platform(vcpus);
        var why = MpTable.WhyOmitted(p);
        Assert.Equal(kept, why == null);
        if (kept) Assert.True(FirmwareArea.MpTable.Fits(PlatformLayout.MpFloatingPointer, MpTable.Build(p, PlatformLayout.MpFloatingPointer).Length));
        else
        {
            Assert.StartsWith($"-c {vcpus}: the MP table ", why);
            Assert.Contains("left out", why);
            Assert.DoesNotContain("\n", why!);
        }
    }

    [Fact]
    public void MpTable_RefusesMoreVcpusThanItsEightBitApicIds()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Build(Platform(255), PlatformLayout.MpFloatingPointer));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(190)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(900)]
    [InlineData(1024)]
    public void Smbios_FitsItsAreaWithALongName_AndCountsEveryVcpu(int vcpus)
    {
        var t = SmbiosTables.Build(Platform(vcpus), Guid.Empty, LongName, PlatformLayout.SmbiosEntryPoint);
        Assert.True(FirmwareArea.Smbios.Fits(PlatformLayout.SmbiosEntryPoint, t.Length), $"{t.Length} bytes");
        Assert.Equal(t.Length - 32, BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(22)));
        Assert.Equal(vcpus + 9, BinaryPrimitives.ReadUInt16LittleEndian(t.AsSpan(28))); // 0,1,3,4xN,16,17,19x2,32,127
        Assert.Contains(new string('n', SmbiosTables.MaxNameLength) + "\0", System.Text.Encoding.ASCII.GetString(t));
        Assert.DoesNotContain(new string('n', SmbiosTables.MaxNameLength + 1), System.Text.Encoding.ASCII.GetString(t));
    }

    [Fact]
    public void Smbios_KeepsTheProcessorStrings_WhileTheyFit()
    {
        var s = System.Text.Encoding.ASCII.GetString(SmbiosTables.Build(Platform(4), Guid.Empty, "vm", PlatformLayout.SmbiosEntryPoint));
        Assert.Equal(4, s.Split("Virtual CPU").Length - 1);
    }

    [Fact]
    public void Smbios_ThatCannotFitEvenCompact_IsRefusedNamingTheFlag()
    {
        var e = Assert.Throws<FirmwareTableTooLargeException>(() =>
            SmbiosTables.Build(Platform(4096), Guid.Empty, "vm", PlatformLayout.SmbiosEntryPoint));
        Assert.StartsWith("-c 4096: the SMBIOS tables (", e.Message);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(255, false)]
    [InlineData(256, false)]
    [InlineData(1024, false)]
    [InlineData(1024, true)]
    public void AcpiTables_FitTheirArea_AndTheMadtNamesEveryVcpuOnce(int vcpus, bool x2apic)
    {
        var tables = AcpiTables.Build(Platform(vcpus, x2apic));
        foreach (var t in tables)
            Assert.True((t.Signature == "RSD PTR " ? FirmwareArea.Rsdp : FirmwareArea.Acpi).Fits(t.Address, t.Bytes.Length), t.Signature);
        var madt = tables.Single(t => t.Signature == "APIC").Bytes;
        var ids = new List<uint>();
        for (int at = 44; at < madt.Length; at += madt[at + 1])
        {
            if (madt[at] == 0) ids.Add(madt[at + 3]);
            if (madt[at] == 9) ids.Add(BinaryPrimitives.ReadUInt32LittleEndian(madt.AsSpan(at + 4)));
        }
        Assert.Equal(Enumerable.Range(0, vcpus).Select(i => (uint)i), ids);
    }

    [Fact]
    public void AreaWrite_RefusesBytesPastTheArea_AndLeavesTheKernelAlone()
    {
        using var memory = new GuestMemory(X86Layout.RamRegions(4UL << 20));
        memory.WriteExactly(new GuestAddress(X86Layout.KernelLoad), [0xAA]);
        var tooBig = new byte[(int)FirmwareArea.Smbios.Capacity + 1];
        var e = Assert.Throws<FirmwareTableTooLargeException>(() => FirmwareArea.Smbios.Write(memory, PlatformLayout.SmbiosEntryPoint, tooBig));
        Assert.Contains("SMBIOS area 0xF1000-0xFFFFF", e.Message);
        Assert.Throws<FirmwareTableTooLargeException>(() => FirmwareArea.MpTable.Write(memory, PlatformLayout.SmbiosEntryPoint - 8, new byte[16]));
        Assert.Throws<FirmwareTableTooLargeException>(() => FirmwareArea.Acpi.Write(memory, PlatformLayout.Rsdp, new byte[1]));
        var kernel = new byte[1];
        memory.ReadExactly(new GuestAddress(X86Layout.KernelLoad), kernel);
        Assert.Equal(0xAA, kernel[0]);
        var smbiosStart = new byte[1];
        memory.ReadExactly(new GuestAddress(PlatformLayout.SmbiosEntryPoint), smbiosStart);
        Assert.Equal(0, smbiosStart[0]);   // refused whole: nothing written
    }
}
