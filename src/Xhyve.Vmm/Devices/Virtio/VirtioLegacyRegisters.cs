using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>
/// The legacy virtio PCI interface in I/O BAR 0 (virtio 1.2 §4.1.4.8) for drivers that predate virtio 1.0:
/// a 20-byte header (24 with MSI-X on) over the same register state as the modern common configuration, then
/// the device configuration. Queues are given as one page frame number, with the rings laid out after it as
/// the legacy interface fixes them (<see cref="RingAddresses"/>).
/// </summary>
internal sealed class VirtioLegacyRegisters(VirtioCommonConfig common, IVirtioTransport transport) : IBusDevice
{
    /// <summary>The header without MSI-X, and with it (config_vector and queue_vector added).</summary>
    public const int Header = 0x14, MsixHeader = 0x18;
    /// <summary>Queue Notify: a 16-bit write of the queue index.</summary>
    public const int QueueNotify = 0x10;
    /// <summary>The legacy interface's ring alignment and page size.</summary>
    public const int QueueAlign = 4096;

    /// <summary>The I/O BAR size for a device configuration of <paramref name="configSize"/> bytes (a power of two, at least 64).</summary>
    public static ulong BarSize(int configSize)
    {
        ulong size = 64;
        while (size < (ulong)(MsixHeader + configSize)) size <<= 1;
        return size;
    }

    /// <summary>Where the legacy layout puts the descriptor table, available ring and used ring of a queue of
    /// <paramref name="size"/> entries that starts at page frame <paramref name="pfn"/>.</summary>
    public static (ulong Desc, ulong Avail, ulong Used) RingAddresses(uint pfn, ushort size)
    {
        ulong desc = (ulong)pfn * QueueAlign;
        ulong avail = desc + 16UL * size;
        ulong used = (avail + 6 + 2UL * size + QueueAlign - 1) & ~(ulong)(QueueAlign - 1);
        return (desc, avail, used);
    }

    private int ConfigStart => transport.MsixEnabled ? MsixHeader : Header;

    public void Read(ulong offset, Span<byte> data)
    {
        data.Fill(0);
        int o = (int)offset, start = ConfigStart;
        var device = transport.Device;
        if (o >= start)
        {
            if (o - start + data.Length <= device.ConfigSize) device.ReadConfig(o - start, data);
            return;
        }
        uint v;
        lock (common.Lock)
        {
            var q = common.SelectedQueue;
            v = (o, data.Length) switch
            {
                (0x00, 4) => (uint)transport.OfferedFeatures,
                (0x04, 4) => (uint)common.DriverFeatures,
                (0x08, 4) => q?.LegacyPfn ?? 0,
                (0x0C, 2) => q?.Size ?? 0,
                (0x0E, 2) => common.QueueSelect,
                (0x12, 1) => transport.ReadStatus(),
                (0x14, 2) => (uint)(ushort)common.ConfigVector,
                (0x16, 2) => q != null ? (uint)(ushort)common.SelectedQueueVector : Virtio.NoVector,
                _ => 0,
            };
        }
        if (o == 0x13 && data.Length == 1) v = transport.ReadIsr();
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(v >> (8 * i));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        int o = (int)offset, start = ConfigStart;
        var device = transport.Device;
        if (o >= start)
        {
            if (o - start + data.Length <= device.ConfigSize) device.WriteConfig(o - start, data);
            return;
        }
        uint v = 0;
        for (int i = data.Length - 1; i >= 0; i--) v = (v << 8) | data[i];
        if (o == QueueNotify && data.Length == 2) { transport.Kick((int)v); return; }
        lock (common.Lock)
        {
            var q = common.SelectedQueue;
            switch (o, data.Length)
            {
                case (0x04, 4) when !common.DriverOk: common.DriverFeatures = v & (uint)transport.OfferedFeatures; break;
                case (0x08, 4) when q != null && !common.DriverOk: q.LegacyPfn = v; break;
                case (0x0E, 2): common.QueueSelect = (ushort)v; break;
                case (0x12, 1): transport.WriteStatus((byte)v); break;
                case (0x14, 2): common.SetConfigVector(v); break;
                case (0x16, 2) when q != null: common.SetSelectedQueueVector(v); break;
            }
        }
    }
}
