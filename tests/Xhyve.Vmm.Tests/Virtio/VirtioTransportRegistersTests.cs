using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Entropy;
using V = Xhyve.Vmm.Devices.Virtio.Virtio;

namespace Xhyve.Vmm.Tests.Virtio;

/// <summary>The common configuration and legacy registers on their own, against a recording transport.</summary>
public sealed class VirtioTransportRegistersTests : IDisposable
{
    private sealed class RecordingTransport : IVirtioTransport
    {
        public VirtioCommonConfig? Common;
        public readonly List<string> Calls = new();
        public IVirtioDevice Device { get; } = new VirtioEntropy();
        public ulong OfferedFeatures => 0x1_0000_0001UL;
        public bool MsixEnabled { get; set; }
        public byte ReadStatus() => Common!.Status;
        public void WriteStatus(byte value) { Calls.Add($"status {value}"); Common!.Status = value; }
        public void EnableQueue(int index, VirtioQueueRegisters queue) { Calls.Add($"enable {index}"); queue.Enabled = true; }
        public byte ReadIsr() { Calls.Add("isr"); return 3; }
        public void Kick(int queue) => Calls.Add($"kick {queue}");
    }

    private readonly RecordingTransport _t = new();
    private readonly VirtioCommonConfig _common;

    public VirtioTransportRegistersTests()
    {
        _common = new VirtioCommonConfig(_t, new Lock(), queueCount: 2, maxQueueSize: 64);
        _t.Common = _common;
    }

    public void Dispose() => _t.Device.Dispose();

    private uint ReadCommon(int offset, int width)
    {
        Span<byte> b = stackalloc byte[8];
        _common.Read(offset, b[..width]);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private void WriteCommon(int offset, int width, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        _common.Write(offset, b[..width]);
    }

    [Fact]
    public void DeviceFeatures_AreReadThroughTheSelector()
    {
        Assert.Equal(1u, ReadCommon(0x04, 4));
        WriteCommon(0x00, 4, 1);
        Assert.Equal(1u, ReadCommon(0x04, 4));
        WriteCommon(0x00, 4, 2);
        Assert.Equal(0u, ReadCommon(0x04, 4));
        Assert.Equal(2u, ReadCommon(0x12, 2));   // num_queues
    }

    [Fact]
    public void Vectors_BeyondTheTable_ReadBackAsNoVector()
    {
        WriteCommon(0x10, 2, 2);
        Assert.Equal(2, _common.ConfigVector);
        WriteCommon(0x10, 2, 3);
        Assert.Equal(V.NoVector, _common.ConfigVector);
        WriteCommon(0x16, 2, 1);
        WriteCommon(0x1A, 2, 0);
        Assert.Equal(0, _common.QueueVector(1));
        WriteCommon(0x16, 2, 5);                  // no such queue: its registers read as zero, writes do nothing
        WriteCommon(0x1A, 2, 1);
        Assert.Equal(0u, ReadCommon(0x18, 2));
    }

    [Fact]
    public void QueueAddresses_TakeEightByteAndHalfWrites_AndFreezeOnceEnabled()
    {
        WriteCommon(0x20, 8, 0x1_2345_6000UL);
        WriteCommon(0x28, 4, 0x7000);
        WriteCommon(0x2C, 4, 0x1);
        var q = _common.Queues[0];
        Assert.Equal(0x1_2345_6000UL, q.Desc);
        Assert.Equal(0x1_0000_7000UL, q.Driver);
        WriteCommon(0x18, 2, 48);                 // not a power of two: kept
        Assert.Equal(64, q.Size);
        WriteCommon(0x18, 2, 32);
        WriteCommon(0x1C, 2, 1);
        Assert.Equal(["enable 0"], _t.Calls);
        WriteCommon(0x20, 8, 0x9000);
        Assert.Equal(0x1_2345_6000UL, q.Desc);
        Assert.Equal(32, q.Size);
    }

    [Fact]
    public void Reset_RestoresPowerOnValues()
    {
        WriteCommon(0x16, 2, 1);
        WriteCommon(0x1A, 2, 1);
        WriteCommon(0x14, 1, V.StatusDriverOk);
        _common.Reset();
        Assert.Equal(0, _common.QueueSelect);
        Assert.Equal(0, _common.Status);
        Assert.Equal(V.NoVector, _common.QueueVector(1));
        Assert.Equal(64, _common.Queues[1].Size);
    }

    [Fact]
    public void Legacy_HeaderGrowsWithMsix_AndNotifyKicks()
    {
        var legacy = new VirtioLegacyRegisters(_common, _t);
        Span<byte> b = stackalloc byte[4];
        legacy.Read(0x0C, b[..2]);
        Assert.Equal(64, BinaryPrimitives.ReadUInt16LittleEndian(b));
        legacy.Write(0x10, [1, 0]);
        legacy.Read(0x13, b[..1]);
        Assert.Equal(["kick 1", "isr"], _t.Calls);
        legacy.Write(0x14, [1, 0]);               // without MSI-X: device configuration (virtio-rng has none)
        Assert.Equal(V.NoVector, _common.ConfigVector);
        _t.MsixEnabled = true;
        legacy.Write(0x14, [1, 0]);
        Assert.Equal(1, _common.ConfigVector);
        legacy.Write(0x04, [0xFF, 0xFF, 0xFF, 0xFF]);
        Assert.Equal(1UL, _common.DriverFeatures);   // only what was offered
    }

    [Theory]
    [InlineData(1u, 256, 0x1000UL, 0x2000UL, 0x3000UL)]
    [InlineData(2u, 64, 0x2000UL, 0x2400UL, 0x3000UL)]
    public void Legacy_RingLayout_FollowsThePfn(uint pfn, ushort size, ulong desc, ulong avail, ulong used) =>
        Assert.Equal((desc, avail, used), VirtioLegacyRegisters.RingAddresses(pfn, size));

    [Theory]
    [InlineData(0, 64UL)]
    [InlineData(40, 64UL)]
    [InlineData(41, 128UL)]
    public void Legacy_BarSize_IsAPowerOfTwoHoldingTheMsixHeaderAndConfig(int configSize, ulong size) =>
        Assert.Equal(size, VirtioLegacyRegisters.BarSize(configSize));
}
