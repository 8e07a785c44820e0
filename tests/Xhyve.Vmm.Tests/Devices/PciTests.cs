using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Vmm.Tests.Devices;

public sealed class PciTests
{
    private int _resetValue = -1;
    private PciRootBus CreateBus()
    {
        var bus = new PciRootBus(v => _resetValue = v);
        bus.Add(new PciAddress(0, 0, 0), PciIdentityFunction.HostBridge());
        bus.Add(new PciAddress(0, 31, 0), PciIdentityFunction.LpcBridge());
        return bus;
    }

    private static void Select(PciRootBus bus, int slot, int fn, int reg)
    {
        Span<byte> a = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(a, 0x8000_0000u | (uint)(slot << 11) | (uint)(fn << 8) | (uint)(reg & 0xFC));
        bus.Write(0, a);
    }

    private static uint ConfigRead(PciRootBus bus, int slot, int fn, int reg, int width = 4)
    {
        Select(bus, slot, fn, reg);
        Span<byte> d = stackalloc byte[width];
        bus.Read(4 + (ulong)(reg & 3), d);
        uint v = 0;
        for (int i = width - 1; i >= 0; i--) v = (v << 8) | d[i];
        return v;
    }

    private static void ConfigWrite(PciRootBus bus, int slot, int reg, uint value)
    {
        Select(bus, slot, 0, reg);
        Span<byte> d = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(d, value);
        bus.Write(4, d);
    }

    [Fact]
    public void Enumeration_SeesHostBridgeAndLpc_AndAllOnesElsewhere()
    {
        var bus = CreateBus();
        Assert.Equal(0x1275_1275u, ConfigRead(bus, 0, 0, 0));
        Assert.Equal(0x7000_8086u, ConfigRead(bus, 31, 0, 0));
        Assert.Equal(0x0601_0000u, ConfigRead(bus, 31, 0, 8) & 0xFFFF_FF00);
        Assert.Equal(0xFFFF_FFFFu, ConfigRead(bus, 5, 0, 0));
    }

    [Fact]
    public void SubDwordReads_ReturnTheRightBytes()
    {
        var bus = CreateBus();
        Assert.Equal(0x8086u, ConfigRead(bus, 31, 0, 0, 2));
        Assert.Equal(0x70u, ConfigRead(bus, 31, 0, 3, 1));
    }

    [Fact]
    public void AddressRegister_ReadsBackWithReservedBitsCleared()
    {
        var bus = CreateBus();
        bus.Write(0, [0x03, 0xF8, 0x00, 0xFF]);
        Span<byte> d = stackalloc byte[4];
        bus.Read(0, d);
        Assert.Equal(0x8000_F800u, BinaryPrimitives.ReadUInt32LittleEndian(d));
    }

    [Fact]
    public void ReadOnlyFields_IgnoreWrites_WritableBitsChange()
    {
        var bus = CreateBus();
        ConfigWrite(bus, 0, 0, 0xDEAD_BEEF);
        Assert.Equal(0x1275_1275u, ConfigRead(bus, 0, 0, 0));
        ConfigWrite(bus, 0, 4, 0xFFFF_FFFF);
        Assert.Equal(0x0000_0407u, ConfigRead(bus, 0, 0, 4));
        ConfigWrite(bus, 0, 0x3C, 0x0000_000B);
        Assert.Equal(0x0Bu, ConfigRead(bus, 0, 0, 0x3C) & 0xFF);
    }

    [Fact]
    public void DisabledAddress_ReadsAllOnes()
    {
        var bus = CreateBus();
        bus.Write(0, [0, 0, 0, 0]);
        Span<byte> d = stackalloc byte[4];
        bus.Read(4, d);
        Assert.Equal(0xFFFF_FFFFu, BinaryPrimitives.ReadUInt32LittleEndian(d));
    }

    [Fact]
    public void ByteWriteToCf9_GoesToResetControl()
    {
        var bus = CreateBus();
        bus.Write(1, [0x06]);
        Assert.Equal(0x06, _resetValue);
    }

    [Fact]
    public void SecondFunctionInSlot_SetsMultiFunctionBitOnFunctionZero()
    {
        var bus = CreateBus();
        bus.Add(new PciAddress(0, 0, 1), PciIdentityFunction.AmdHostBridge());
        Assert.Equal(0x80u, ConfigRead(bus, 0, 0, 0x0C) >> 16 & 0x80);
    }

    [Fact]
    public void AddingTwoFunctionsAtOneAddress_IsRefused()
    {
        var bus = CreateBus();
        var e = Assert.Throws<InvalidOperationException>(() => bus.Add(new PciAddress(0, 0, 0), PciIdentityFunction.LpcBridge()));
        Assert.Contains("hostbridge", e.Message);
    }

    [Fact]
    public void MisalignedConfigAccess_IsIgnored()
    {
        var space = new PciConfigSpace(1, 2, 3, 4, 5);
        Assert.Equal(0xFFFF_FFFFu, space.Read(2, 4));
        Assert.Equal(0xFFFF_FFFFu, space.Read(254, 4));
    }
}
