using System.Buffers.Binary;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>One queue's registers as the driver programs them (through the common configuration, or the legacy PFN).</summary>
internal sealed class VirtioQueueRegisters(ushort max)
{
    public ushort Size = max;
    public bool Enabled;
    public ulong Desc, Driver, Device;
    public uint LegacyPfn;
}

/// <summary>What the register blocks need from the transport, which keeps the device status state machine, the
/// ISR, the doorbells and the interrupts. Called with the register lock held, except <see cref="ReadIsr"/> and
/// <see cref="Kick"/>.</summary>
internal interface IVirtioTransport
{
    IVirtioDevice Device { get; }
    /// <summary>The device's features and the transport's.</summary>
    ulong OfferedFeatures { get; }
    /// <summary>device_status as the driver reads it (the stored status, with DEVICE_NEEDS_RESET when set).</summary>
    byte ReadStatus();
    /// <summary>The driver writes device_status: 0 resets, DRIVER_OK activates.</summary>
    void WriteStatus(byte value);
    /// <summary>queue_enable = 1 for a queue whose rings the driver has programmed.</summary>
    void EnableQueue(int index, VirtioQueueRegisters queue);
    /// <summary>Reads and clears the ISR (the driver's INTx acknowledgement).</summary>
    byte ReadIsr();
    /// <summary>A queue notification that came through the registers (not ioeventfd).</summary>
    void Kick(int queue);
    /// <summary>MSI-X is on: the legacy header grows by the two vector registers.</summary>
    bool MsixEnabled { get; }
}

/// <summary>
/// The register state a virtio PCI driver programs, and the modern common configuration structure over it
/// (virtio 1.2 §4.1.4.3, struct virtio_pci_common_cfg): feature selection and negotiation, device_status as
/// stored, the configuration and per-queue MSI-X vectors, the queue selector and each queue's size, enable and
/// ring addresses. The legacy header (<see cref="VirtioLegacyRegisters"/>) reads and writes the same state.
/// Cloud Hypervisor and Firecracker keep theirs apart from the transport the same way. Everything but the
/// vectors is guarded by <see cref="Lock"/>; the vectors are read by interrupt paths without it.
/// </summary>
internal sealed class VirtioCommonConfig
{
    /// <summary>Bytes of struct virtio_pci_common_cfg that this transport implements (up to queue_notify_data).</summary>
    public const uint Size = 0x3C;

    private readonly IVirtioTransport _transport;
    private readonly ushort _maxQueueSize;
    private readonly int[] _vectors;
    private int _configVector = Virtio.NoVector;

    public VirtioCommonConfig(IVirtioTransport transport, Lock registerLock, int queueCount, ushort maxQueueSize)
    {
        _transport = transport;
        Lock = registerLock;
        _maxQueueSize = maxQueueSize;
        Queues = new VirtioQueueRegisters[queueCount];
        _vectors = new int[queueCount];
        Reset();
    }

    /// <summary>The transport's register lock.</summary>
    public Lock Lock { get; }
    public VirtioQueueRegisters[] Queues { get; }
    public ulong DriverFeatures { get; set; }
    public uint DeviceFeatureSelect { get; set; }
    public uint DriverFeatureSelect { get; set; }
    /// <summary>device_status as the transport last stored it (without DEVICE_NEEDS_RESET).</summary>
    public byte Status { get; set; }
    public ushort QueueSelect { get; set; }
    public VirtioQueueRegisters? SelectedQueue => QueueSelect < Queues.Length ? Queues[QueueSelect] : null;
    public bool DriverOk => (Status & Virtio.StatusDriverOk) != 0;

    public int ConfigVector => Volatile.Read(ref _configVector);
    public int QueueVector(int queue) => Volatile.Read(ref _vectors[queue]);
    public void SetConfigVector(uint v) => Volatile.Write(ref _configVector, ValidVector(v));
    /// <summary>Sets the selected queue's vector; without a selected queue, nothing.</summary>
    public void SetSelectedQueueVector(uint v)
    {
        if (QueueSelect < Queues.Length) Volatile.Write(ref _vectors[QueueSelect], ValidVector(v));
    }
    /// <summary>The selected queue's vector, or NO_VECTOR without one.</summary>
    public int SelectedQueueVector => QueueSelect < Queues.Length ? QueueVector(QueueSelect) : Virtio.NoVector;

    /// <summary>A vector the MSI-X table has (one per queue plus configuration), or NO_VECTOR (which reads back and
    /// tells the driver it failed).</summary>
    private int ValidVector(uint v) => v < (uint)(Queues.Length + 1) ? (int)v : Virtio.NoVector;

    /// <summary>Back to the power-on values (a device reset).</summary>
    public void Reset()
    {
        Status = 0;
        DriverFeatures = 0;
        DeviceFeatureSelect = DriverFeatureSelect = 0;
        QueueSelect = 0;
        Volatile.Write(ref _configVector, Virtio.NoVector);
        for (int i = 0; i < Queues.Length; i++)
        {
            Queues[i] = new VirtioQueueRegisters(_maxQueueSize);
            Volatile.Write(ref _vectors[i], Virtio.NoVector);
        }
    }

    public void Read(int offset, Span<byte> data)
    {
        Span<byte> image = stackalloc byte[0x40];
        image.Clear();
        lock (Lock)
        {
            ulong features = _transport.OfferedFeatures;
            BinaryPrimitives.WriteUInt32LittleEndian(image[0x00..], DeviceFeatureSelect);
            BinaryPrimitives.WriteUInt32LittleEndian(image[0x04..], DeviceFeatureSelect < 2 ? (uint)(features >> (int)(32 * DeviceFeatureSelect)) : 0);
            BinaryPrimitives.WriteUInt32LittleEndian(image[0x08..], DriverFeatureSelect);
            BinaryPrimitives.WriteUInt32LittleEndian(image[0x0C..], DriverFeatureSelect < 2 ? (uint)(DriverFeatures >> (int)(32 * DriverFeatureSelect)) : 0);
            BinaryPrimitives.WriteUInt16LittleEndian(image[0x10..], (ushort)ConfigVector);
            BinaryPrimitives.WriteUInt16LittleEndian(image[0x12..], (ushort)Queues.Length);
            image[0x14] = _transport.ReadStatus();
            image[0x15] = 0;   // config_generation: the device configuration never changes under the driver
            BinaryPrimitives.WriteUInt16LittleEndian(image[0x16..], QueueSelect);
            if (SelectedQueue is { } q)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(image[0x18..], q.Size);
                BinaryPrimitives.WriteUInt16LittleEndian(image[0x1A..], (ushort)QueueVector(QueueSelect));
                BinaryPrimitives.WriteUInt16LittleEndian(image[0x1C..], (ushort)(q.Enabled ? 1 : 0));
                BinaryPrimitives.WriteUInt16LittleEndian(image[0x1E..], QueueSelect);   // queue_notify_off
                BinaryPrimitives.WriteUInt64LittleEndian(image[0x20..], q.Desc);
                BinaryPrimitives.WriteUInt64LittleEndian(image[0x28..], q.Driver);
                BinaryPrimitives.WriteUInt64LittleEndian(image[0x30..], q.Device);
                BinaryPrimitives.WriteUInt16LittleEndian(image[0x38..], QueueSelect);   // queue_notify_data
            }
        }
        if (offset + data.Length <= (int)Size) image.Slice(offset, data.Length).CopyTo(data);
        else data.Fill(0);
    }

    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        // 64-bit fields may come as one 8-byte access or two 4-byte halves.
        if (data.Length == 8 && offset is 0x20 or 0x28 or 0x30)
        {
            Write(offset, data[..4]);
            Write(offset + 4, data[4..]);
            return;
        }
        uint v = data.Length switch
        {
            1 => data[0], 2 => BinaryPrimitives.ReadUInt16LittleEndian(data), 4 => BinaryPrimitives.ReadUInt32LittleEndian(data), _ => 0,
        };
        lock (Lock)
        {
            var q = SelectedQueue;
            // Queue registers are frozen once the queue is enabled (§4.1.4.3.2), except its vector.
            bool queueWritable = q != null && !q.Enabled && !DriverOk;
            switch (offset, data.Length)
            {
                case (0x00, 4): DeviceFeatureSelect = v; break;
                case (0x08, 4): DriverFeatureSelect = v; break;
                case (0x0C, 4) when (Status & Virtio.StatusFeaturesOk) == 0 && DriverFeatureSelect < 2:
                    int shift = (int)(32 * DriverFeatureSelect);
                    DriverFeatures = (DriverFeatures & ~(0xFFFF_FFFFUL << shift)) | ((ulong)v << shift);
                    break;
                case (0x10, 2): SetConfigVector(v); break;
                case (0x14, 1): _transport.WriteStatus((byte)v); break;
                case (0x16, 2): QueueSelect = (ushort)v; break;
                case (0x18, 2) when queueWritable:
                    // Sizes must be powers of two no larger than the maximum; anything else keeps the old value.
                    if (v != 0 && v <= _maxQueueSize && (v & (v - 1)) == 0) q!.Size = (ushort)v;
                    break;
                case (0x1A, 2) when q != null: SetSelectedQueueVector(v); break;
                case (0x1C, 2) when queueWritable && v == 1: _transport.EnableQueue(QueueSelect, q!); break;
                case (0x20, 4) when queueWritable: q!.Desc = Low(q.Desc, v); break;
                case (0x24, 4) when queueWritable: q!.Desc = High(q.Desc, v); break;
                case (0x28, 4) when queueWritable: q!.Driver = Low(q.Driver, v); break;
                case (0x2C, 4) when queueWritable: q!.Driver = High(q.Driver, v); break;
                case (0x30, 4) when queueWritable: q!.Device = Low(q.Device, v); break;
                case (0x34, 4) when queueWritable: q!.Device = High(q.Device, v); break;
            }
        }
    }

    private static ulong Low(ulong old, uint v) => (old & 0xFFFF_FFFF_0000_0000UL) | v;
    private static ulong High(ulong old, uint v) => (old & 0xFFFF_FFFFUL) | ((ulong)v << 32);
}
