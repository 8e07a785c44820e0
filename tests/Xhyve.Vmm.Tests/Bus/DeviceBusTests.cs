using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Tests.Bus;

public sealed class DeviceBusTests
{
    private sealed class Recorder : IBusDevice
    {
        public List<(ulong Offset, byte[] Data)> Writes { get; } = new();
        public void Read(ulong offset, Span<byte> data) => data.Fill((byte)offset);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Writes.Add((offset, data.ToArray()));
    }

    [Fact]
    public void Dispatch_PassesOffsetWithinTheRange()
    {
        var bus = new DeviceBus("pio");
        var dev = new Recorder();
        bus.Register(0x3F8, 8, dev, "uart");
        Assert.True(bus.Write(0x3FB, [0x80]));
        Assert.Equal(3ul, dev.Writes[0].Offset);
        var b = new byte[1];
        Assert.True(bus.Read(0x3FD, b));
        Assert.Equal(5, b[0]);
    }

    [Fact]
    public void OverlappingRegistration_IsRefusedNamingBothDevices()
    {
        var bus = new DeviceBus("pio");
        bus.Register(0x70, 2, new Recorder(), "rtc");
        var e = Assert.Throws<InvalidOperationException>(() => bus.Register(0x71, 4, new Recorder(), "other"));
        Assert.Contains("rtc", e.Message);
        Assert.Contains("other", e.Message);
    }

    [Fact]
    public void AccessStraddlingTheEndOfARange_IsUnhandled()
    {
        var bus = new DeviceBus("pio");
        bus.Register(0x80, 1, new Recorder(), "post");
        Assert.False(bus.Write(0x80, [1, 2]));
        Assert.False(bus.Read(0x7F, new byte[1]));
    }

    [Fact]
    public void ManyRanges_AreFoundByBinarySearch()
    {
        var bus = new DeviceBus("mmio");
        var devices = Enumerable.Range(0, 50).Select(_ => new Recorder()).ToArray();
        for (int i = 49; i >= 0; i--) bus.Register((ulong)i * 0x1000, 0x100, devices[i], $"d{i}");
        for (int i = 0; i < 50; i++) Assert.True(bus.Write((ulong)i * 0x1000 + 0x10, [1]));
        Assert.All(devices, d => Assert.Single(d.Writes));
        Assert.False(bus.Write(0x1100, [1]));
    }

    private static VcpuExit IoExit(ushort port, bool write, byte[] data, int size, int count) =>
        new() { Reason = VcpuExitReason.Io, Port = port, IsWrite = write, Data = data, Size = size, Count = count };

    [Fact]
    public void UnclaimedRead_ReturnsAllOnes_AndContinues()
    {
        var dispatcher = new ExitDispatcher(new DeviceBus("pio"), new DeviceBus("mmio"), strict: false);
        var data = new byte[2];
        Assert.Equal(DispatchResult.Continue, dispatcher.Dispatch(IoExit(0x1234, false, data, 2, 1)));
        Assert.Equal(new byte[] { 0xFF, 0xFF }, data);
        Assert.Equal(1, dispatcher.UnhandledAccesses);
    }

    [Fact]
    public void UnclaimedAccess_WithStrictIo_IsReportedUnhandled()
    {
        var dispatcher = new ExitDispatcher(new DeviceBus("pio"), new DeviceBus("mmio"), strict: true);
        Assert.Equal(DispatchResult.UnhandledAccess, dispatcher.Dispatch(IoExit(0x1234, true, [1], 1, 1)));
    }

    [Fact]
    public void StringIo_DispatchesEveryElement()
    {
        var pio = new DeviceBus("pio");
        var dev = new Recorder();
        pio.Register(0x80, 1, dev, "post");
        var dispatcher = new ExitDispatcher(pio, new DeviceBus("mmio"), strict: true);
        Assert.Equal(DispatchResult.Continue, dispatcher.Dispatch(IoExit(0x80, true, [1, 2, 3], 1, 3)));
        Assert.Equal(new byte[] { 1, 2, 3 }, dev.Writes.Select(w => w.Data[0]));
    }

    [Fact]
    public void ByteAdapter_DropsWideAccesses_AndCountsThem()
    {
        var adapter = new ByteRegisterBusAdapter(new Xhyve.Vmm.Devices.Legacy.PostCode());
        var data = new byte[4];
        adapter.Read(0, data);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, data);
        adapter.Write(0, [1, 2]);
        Assert.Equal(2, adapter.BadWidthAccesses);
    }
}
