using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Devices;

internal sealed class RecordingMsiSink : IMsiSink
{
    public List<(ulong Address, uint Data)> Messages { get; } = new();
    public void Signal(int vector, ulong address, uint data) => Messages.Add((address, data));
}

public sealed class PciDeviceTests
{
    private sealed class Register : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => data.Fill(0xAB);
        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }

    private sealed class BarDevice : PciDevice
    {
        public BarDevice() : base("bars", new PciConfigSpace(0x1234, 0x5678, 0xFF, 0, 0))
        {
            AddBar(0, PciBarKind.Io, 0x20, new Register());
            AddBar(1, PciBarKind.Memory32, 0x1000, new Register());
            AddBar(2, PciBarKind.Memory64, 0x2_0000_0000, new Register(), prefetchable: true);
        }
    }

    [Fact]
    public void BarSizingProtocol_ReadsBackSizeAndTypeBits()
    {
        var d = new BarDevice();
        var c = d.Config;
        foreach (int reg in new[] { 0x10, 0x14, 0x18, 0x1C }) c.Write(reg, 4, 0xFFFF_FFFF);
        Assert.Equal(0xFFFF_FFE1u, c.Read(0x10, 4));           // I/O, 32 bytes
        Assert.Equal(0xFFFF_F000u, c.Read(0x14, 4));           // 32-bit memory, 4 KiB
        Assert.Equal(0x0000_000Cu, c.Read(0x18, 4));           // 64-bit prefetchable, low half all size bits
        Assert.Equal(0xFFFF_FFFEu, c.Read(0x1C, 4));           // 8 GiB
        Assert.Equal(0u, c.Read(0x20, 4));                      // unimplemented BAR reads zero
    }

    [Fact]
    public void BarAddress_CombinesBothHalvesOfA64BitBar()
    {
        var d = new BarDevice();
        d.Config.Write(0x18, 4, 0);
        d.Config.Write(0x1C, 4, 0x8);
        Assert.Equal(0x8_0000_0000UL, d.Bars.Single(b => b.Index == 2).Address(d.Config));
    }

    [Fact]
    public void CapabilityList_IsChainedFromTheCapabilitiesPointer_AndStatusSaysSo()
    {
        var c = new PciConfigSpace(1, 2, 3, 4, 5);
        int first = c.AddCapability(0x05, new byte[12], new byte[12]);
        int second = c.AddCapability(0x11, new byte[10], new byte[10]);
        Assert.Equal(0x10u, c.Read(PciConfigSpace.Status, 2) & 0x10);
        Assert.Equal((uint)first, c.Read(0x34, 1));
        Assert.Equal(0x05u, c.Read(first, 1));
        Assert.Equal((uint)second, c.Read(first + 1, 1));
        Assert.Equal(0x11u, c.Read(second, 1));
        Assert.Equal(0u, c.Read(second + 1, 1));
        Assert.Equal(0u, (uint)second % 4);
    }

    private static (PciConfigSpace Config, PciInterrupts Interrupts, MsixTable Table, RecordingMsiSink Sink, RecordingInterruptLine Intx, int Msix, int Msi) Msix(int vectors = 4)
    {
        var c = new PciConfigSpace(1, 2, 3, 4, 5);
        var sink = new RecordingMsiSink();
        var intx = new RecordingInterruptLine();
        var interrupts = PciInterrupts.Create(c, sink, intx, msiVectors: 4, msixVectors: vectors, msixBar: 1, out var table);
        int msi = (int)c.Read(0x34, 1);
        int msix = (int)c.Read(msi + 1, 1);
        return (c, interrupts, table!, sink, intx, msix, msi);
    }

    private static void WriteEntry(MsixTable t, int v, ulong address, uint data, bool masked)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)address); t.Write((ulong)(16 * v), b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)(address >> 32)); t.Write((ulong)(16 * v + 4), b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, data); t.Write((ulong)(16 * v + 8), b);
        BinaryPrimitives.WriteUInt32LittleEndian(b, masked ? 1u : 0); t.Write((ulong)(16 * v + 12), b);
    }

    private static uint Pba(MsixTable t) { var b = new byte[4]; t.Read(MsixTable.PbaOffset, b); return BinaryPrimitives.ReadUInt32LittleEndian(b); }

    [Fact]
    public void Msix_DeliversTheEntrysMessage_WhenEnabledAndUnmasked()
    {
        var (c, irq, table, sink, intx, msix, _) = Msix();
        WriteEntry(table, 2, 0xFEE0_0000, 0x41, masked: false);
        c.Write(msix + 2, 2, 0x8000);
        irq.Trigger(2);
        Assert.Equal([(0xFEE0_0000UL, 0x41u)], sink.Messages);
        Assert.Empty(intx.Transitions);
        Assert.Equal(0x8003u, c.Read(msix + 2, 2));             // table size 4 (N-1), enable
    }

    [Fact]
    public void Msix_MaskedVector_SetsPendingBit_AndUnmaskDeliversIt()
    {
        var (c, irq, table, sink, _, msix, _) = Msix();
        c.Write(msix + 2, 2, 0x8000);
        WriteEntry(table, 1, 0xFEE0_0000, 0x42, masked: true);
        irq.Trigger(1);
        Assert.Empty(sink.Messages);
        Assert.Equal(0b10u, Pba(table));
        WriteEntry(table, 1, 0xFEE0_0000, 0x42, masked: false);
        Assert.Equal([(0xFEE0_0000UL, 0x42u)], sink.Messages);
        Assert.Equal(0u, Pba(table));
    }

    [Fact]
    public void Msix_FunctionMask_HoldsEveryVector_UntilCleared()
    {
        var (c, irq, table, sink, _, msix, _) = Msix();
        WriteEntry(table, 0, 0xFEE0_0000, 0x30, masked: false);
        c.Write(msix + 2, 2, 0xC000);
        irq.Trigger(0);
        Assert.Empty(sink.Messages);
        c.Write(msix + 2, 2, 0x8000);
        irq.Reevaluate();
        Assert.Single(sink.Messages);
    }

    [Fact]
    public void Msix_VectorsStartMasked_AndOutOfRangeVectorsAreIgnored()
    {
        var (c, irq, table, sink, _, msix, _) = Msix();
        c.Write(msix + 2, 2, 0x8000);
        irq.Trigger(0);
        Assert.Empty(sink.Messages);
        irq.Trigger(99);
        irq.Trigger(-1);
        Assert.Equal(1u, Pba(table));
    }

    [Fact]
    public void Msix_MessageOutsideTheApicWindow_IsDropped()
    {
        var (c, irq, table, sink, _, msix, _) = Msix();
        WriteEntry(table, 0, 0x1234_0000, 0x30, masked: false);
        c.Write(msix + 2, 2, 0x8000);
        irq.Trigger(0);
        Assert.Empty(sink.Messages);
    }

    [Fact]
    public void MsixTable_BadWidthOrPbaWrite_IsIgnored()
    {
        var (_, _, table, _, _, _, _) = Msix();
        table.Write(0, [1, 2]);
        table.Write(MsixTable.PbaOffset, [0xFF, 0xFF, 0xFF, 0xFF]);
        Assert.Equal(0u, Pba(table));
        var b = new byte[4];
        table.Read(0x2000, b);
        Assert.Equal(new byte[4], b);
    }

    [Fact]
    public void Msi_MultipleMessages_PutTheVectorInTheLowDataBits()
    {
        var (c, irq, _, sink, _, _, msi) = Msix();
        c.Write(msi + 4, 4, 0xFEE0_0000);
        c.Write(msi + 12, 2, 0x60);
        c.Write(msi + 2, 2, 0x21);                             // enable, 4 messages enabled (log2 = 2)
        irq.Trigger(3);
        Assert.Equal([(0xFEE0_0000UL, 0x63u)], sink.Messages);
    }

    [Fact]
    public void Intx_IsLevel_SetsStatus_AndInterruptDisableHoldsTheLineLow()
    {
        var (c, irq, _, _, intx, _, _) = Msix();
        irq.Trigger(0);
        Assert.True(intx.Level);
        Assert.Equal(0x08u, c.Read(PciConfigSpace.Status, 2) & 0x08);
        c.Write(PciConfigSpace.Command, 2, PciConfigSpace.CommandIntxDisable);
        irq.Reevaluate();
        Assert.False(intx.Level);
        Assert.Equal(0x08u, c.Read(PciConfigSpace.Status, 2) & 0x08); // still pending inside the device
        irq.DeassertIntx();
        Assert.Equal(0u, c.Read(PciConfigSpace.Status, 2) & 0x08);
    }

    [Fact]
    public void RootBus_MapsBarsOnlyWhileDecodeIsOn_AndFollowsAMove()
    {
        var pio = new DeviceBus("pio");
        var mmio = new DeviceBus("mmio");
        var root = new PciRootBus(_ => { }, pio, mmio);
        var d = new BarDevice();
        var address = new PciAddress(0, 5, 0);
        root.Add(address, d);
        new PciResourceAllocator(PlatformLayout.Mmio64Start(0)).Allocate(d);
        root.UpdateMappings(d);
        Assert.Equal(2, mmio.Ranges.Count);
        Assert.Single(pio.Ranges);
        Assert.Equal(0xC000_0000UL, mmio.Ranges.Single(r => r.Length == 0x1000).Start);
        ulong bar64 = mmio.Ranges.Single(r => r.Length == 0x2_0000_0000).Start;
        Assert.True(bar64 >= PlatformLayout.Mmio64Start(0) && bar64 % 0x2_0000_0000 == 0, $"0x{bar64:X}");   // 8 GiB-aligned in the 64-bit window

        root.WriteConfig(address, PciConfigSpace.Command, 2, PciConfigSpace.CommandIo);   // memory decode off
        Assert.Empty(mmio.Ranges);
        root.WriteConfig(address, PciConfigSpace.Command, 2, PciConfigSpace.CommandIo | PciConfigSpace.CommandMemory);
        root.WriteConfig(address, 0x14, 4, 0xC010_0000);
        Assert.Contains(mmio.Ranges, r => r.Start == 0xC010_0000 && r.Length == 0x1000);
        Assert.DoesNotContain(mmio.Ranges, r => r.Start == 0xC000_0000);
    }

    [Fact]
    public void RootBus_OverlappingGuestPlacement_IsLeftUnmapped_NotAnError()
    {
        var mmio = new DeviceBus("mmio");
        mmio.Register(0xD000_0000, 0x1000, new Register(), "other");
        var root = new PciRootBus(_ => { }, new DeviceBus("pio"), mmio);
        var d = new BarDevice();
        var address = new PciAddress(0, 5, 0);
        root.Add(address, d);
        root.WriteConfig(address, 0x14, 4, 0xD000_0000);
        root.WriteConfig(address, PciConfigSpace.Command, 2, PciConfigSpace.CommandMemory);
        Assert.Equal(1, root.RejectedMappings);
    }

    [Fact]
    public void Allocator_AlignsEveryBarToItsSize_AndEnablesDecode()
    {
        var d1 = new BarDevice();
        var d2 = new BarDevice();
        var allocator = new PciResourceAllocator(PlatformLayout.Mmio64Start(1UL << 30));
        allocator.Allocate(d1);
        allocator.Allocate(d2);
        foreach (var d in new[] { d1, d2 })
        {
            foreach (var bar in d.Bars) Assert.Equal(0UL, bar.Address(d.Config) % bar.Size);
            Assert.Equal(3, d.Config.CommandRegister & 3);
        }
        Assert.NotEqual(d1.Bars[1].Address(d1.Config), d2.Bars[1].Address(d2.Config));
        Assert.True(d1.Bars[0].Address(d1.Config) >= PlatformLayout.PciIoStart);
    }

    [Fact]
    public void Ecam_ReachesTheSameConfigurationSpaceAsCf8()
    {
        var root = new PciRootBus(_ => { });
        root.Add(new PciAddress(0, 3, 0), new BarDevice());
        var ecam = new PciEcam(root);
        var b = new byte[4];
        ecam.Read((3UL << 15), b);
        Assert.Equal(0x5678_1234u, BinaryPrimitives.ReadUInt32LittleEndian(b));
        ecam.Read((4UL << 15), b);
        Assert.Equal(0xFFFF_FFFFu, BinaryPrimitives.ReadUInt32LittleEndian(b));
        ecam.Read((3UL << 15) | 0x100, b);                      // extended space: no capabilities
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b));
    }
}
