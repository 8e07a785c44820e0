using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio.Queue;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>Lets a device have the hypervisor signal an eventfd on a guest write to a doorbell instead of
/// exiting to the vCPU thread (KVM ioeventfd). Wired from the hypervisor by the composition root.</summary>
public interface IDoorbells
{
    bool TryAttach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch);
    void Detach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch);
}

/// <summary>
/// virtio over PCI (virtio 1.2 §4.1), as a transitional device: the modern interface through vendor
/// capabilities into BAR 2 (common configuration, ISR, device configuration, notifications) and the legacy
/// interface in I/O BAR 0 for older drivers; MSI-X (BAR 1) with a vector per queue plus one for
/// configuration changes, falling back to INTx with the ISR. Queue notifications go to an eventfd that a
/// worker thread waits on; with ioeventfd the kick never leaves the kernel on the vCPU thread.
/// The registers the driver programs are <see cref="VirtioCommonConfig"/> (modern) and
/// <see cref="VirtioLegacyRegisters"/> (legacy); this class keeps the device status state machine
/// (activation, reset, DEVICE_NEEDS_RESET), the ISR and interrupts, and the doorbells.
/// </summary>
public sealed class VirtioPciDevice : PciDevice, IDeviceCounters, IVirtioTransport, IDisposable
{
    public const int ModernBar = 2, LegacyBar = 0, MsixBar = 1;
    public const ulong CommonOffset = 0x0000, IsrOffset = 0x1000, DeviceConfigOffset = 0x2000, NotifyOffset = 0x3000;
    public const uint NotifyMultiplier = 4;
    public const ulong ModernBarSize = 0x4000;
    private const byte VendorCapability = 0x09;
    private const byte CapCommon = 1, CapNotify = 2, CapIsr = 3, CapDevice = 4;
    private const ulong TransportFeatures = Virtio.FeatureIndirectDesc | Virtio.FeatureEventIdx | Virtio.FeatureVersion1;

    private readonly IVirtioDevice _device;
    private readonly IGuestMemory _memory;
    private readonly IDoorbells _doorbells;
    private readonly PciInterrupts _interrupts;
    private readonly Lock _lock = new();
    private readonly VirtioCommonConfig _common;
    private readonly EventFd[] _kicks;
    private readonly VirtioWorker _worker;
    private readonly RateLimitedLog _log;
    private readonly List<(ulong Address, int Width, bool Pio, ulong? Match, EventFd Fd)> _attached = new();
    private int _isr;
    private volatile bool _active;
    private long _notifications, _interruptsRaised, _faults;
    private static readonly QueueError[] QueueErrors = Enum.GetValues<QueueError>();
    private static readonly string[] QueueErrorNames = QueueErrors.Select(e => "queue_" + Snake(e.ToString())).ToArray();
    private readonly long[] _chainErrors = new long[QueueErrors.Length];

    // singleVectorMsi is -W (bhyve's meaning): one MSI message instead of MSI-X. Drivers that use only
    // MSI-X with virtio (Linux) then fall back to INTx.
    // log: where device faults are reported (stderr, rate-limited, by default).
    public VirtioPciDevice(IVirtioDevice device, IGuestMemory memory, IMsiSink msi, IInterruptLine intx, IDoorbells doorbells, bool singleVectorMsi = false,
        RateLimitedLog? log = null)
        : base(device.Name, new PciConfigSpace(Virtio.PciVendor, Virtio.TransitionalPciDeviceId(device.DeviceType), device.PciClass.Class, device.PciClass.Subclass, 0))
    {
        _device = device;
        _log = log ?? new RateLimitedLog();
        _memory = memory;
        _doorbells = doorbells;
        Msi = msi;
        // Subsystem id = virtio device type, as transitional devices announce it (§4.1.2.1).
        Span<byte> subsystem = stackalloc byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(subsystem, Virtio.PciVendor);
        BinaryPrimitives.WriteUInt16LittleEndian(subsystem[2..], device.DeviceType);
        Config.Define(PciConfigSpace.SubsystemVendorId, subsystem, [0, 0, 0, 0]);

        _interrupts = PciInterrupts.Create(Config, msi, intx, msiVectors: singleVectorMsi ? 1 : 0,
            msixVectors: singleVectorMsi ? 0 : device.QueueCount + 1, msixBar: MsixBar, out var table);
        _common = new VirtioCommonConfig(this, _lock, device.QueueCount, device.MaxQueueSize);
        AddCapability(CapCommon, CommonOffset, VirtioCommonConfig.Size);
        AddCapability(CapIsr, IsrOffset, 1);
        AddCapability(CapDevice, DeviceConfigOffset, (uint)Math.Max(device.ConfigSize, 1));
        AddCapability(CapNotify, NotifyOffset, (uint)(device.QueueCount * NotifyMultiplier), NotifyMultiplier);

        AddBar(LegacyBar, PciBarKind.Io, VirtioLegacyRegisters.BarSize(device.ConfigSize), new VirtioLegacyRegisters(_common, this));
        if (table != null) AddBar(MsixBar, PciBarKind.Memory32, MsixTable.BarSize, table);
        // 32-bit so guests without 64-bit addressing (and our 32-bit test guests) reach it.
        AddBar(ModernBar, PciBarKind.Memory32, ModernBarSize, new ModernRegisters(this));

        _kicks = Enumerable.Range(0, device.QueueCount).Select(_ => new EventFd()).ToArray();
        // A device that asked for a reset is left alone until the driver gives it one.
        _worker = new VirtioWorker($"virtio {device.Name}", _kicks, q => { if (Running) _device.Process(q); },
            e => DeviceFault(-1, e), device is IPolledVirtioDevice polled ? new RunningOnly(this, polled) : null);
        if (device is IConfigChangeNotifier notifier) notifier.ConfigChanged = ConfigInterrupt;
    }

    /// <summary>Activated and not waiting for a reset: the device may touch its queues.</summary>
    private bool Running => _active && Volatile.Read(ref _needsReset) == 0;

    /// <summary>A device's host fd is waited on only while the device runs, so a device waiting for a reset (or
    /// for DRIVER_OK) is not woken by input it may not handle.</summary>
    private sealed class RunningOnly(VirtioPciDevice t, IPolledVirtioDevice d) : IPolledVirtioDevice
    {
        public int PollFd => d.PollFd;
        public short PollEvents => t.Running ? d.PollEvents : (short)0;
        public bool HasPendingWork => t.Running && d.HasPendingWork;
        public void PollReady(short revents) { if (t.Running) d.PollReady(revents); }
    }

    public IVirtioDevice Device => _device;
    public long Notifications => Interlocked.Read(ref _notifications);
    public long InterruptsRaised => Interlocked.Read(ref _interruptsRaised);
    /// <summary>Chains (or rings) the guest got wrong, by reason, over every activation.</summary>
    public long ChainErrors(QueueError reason) => Interlocked.Read(ref _chainErrors[(int)reason]);

    /// <summary><see cref="ChainErrors"/> as report counters ("queue_chain_too_long"), in a fixed order.</summary>
    public IEnumerable<KeyValuePair<string, long>> ChainErrorCounters
    {
        get { for (int i = 1; i < QueueErrors.Length; i++) yield return new(QueueErrorNames[i], ChainErrors(QueueErrors[i])); }
    }

    /// <summary>The transport's counters, then its MSI sink's and its device's (each when it has any).</summary>
    public IEnumerable<KeyValuePair<string, long>> Counters
    {
        get
        {
            yield return new("notifications", Notifications);
            yield return new("interrupts", InterruptsRaised);
            yield return new("faults", Faults);
            foreach (var c in ChainErrorCounters) yield return c;
            if (Msi is IDeviceCounters msi) foreach (var c in msi.Counters) yield return c;
            if (_device is IDeviceCounters device) foreach (var c in device.Counters) yield return c;
        }
    }

    private static string Snake(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    /// <summary>Unexpected exceptions in the device (each set NEEDS_RESET instead of ending the engine).</summary>
    public long Faults => Interlocked.Read(ref _faults);
    /// <summary>Where the MSI-X messages go (the report shows whether they went through irqfd).</summary>
    public IMsiSink Msi { get; }

    /// <summary>Doorbells the hypervisor signals directly (ioeventfd).</summary>
    public int DoorbellsInHypervisor { get { lock (_lock) return _attached.Count; } }

    private void AddCapability(byte type, ulong offset, uint length, uint? multiplier = null)
    {
        // struct virtio_pci_cap after cap_vndr/cap_next: cap_len, cfg_type, bar, id, padding[2], offset, length.
        Span<byte> body = stackalloc byte[multiplier == null ? 14 : 18];
        body.Clear();
        body[0] = (byte)(body.Length + 2);
        body[1] = type;
        body[2] = ModernBar;
        BinaryPrimitives.WriteUInt32LittleEndian(body[6..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(body[10..], length);
        if (multiplier is { } m) BinaryPrimitives.WriteUInt32LittleEndian(body[14..], m);
        Config.AddCapability(VendorCapability, body, stackalloc byte[body.Length]);
    }

    public override void ConfigWritten(int offset, int width) => _interrupts.Reevaluate();

    private ulong OfferedFeatures => _device.Features | TransportFeatures;
    ulong IVirtioTransport.OfferedFeatures => OfferedFeatures;
    bool IVirtioTransport.MsixEnabled => _interrupts.MsixEnabled;
    byte IVirtioTransport.ReadStatus() => StatusLocked;
    void IVirtioTransport.WriteStatus(byte value) => WriteStatus(value);
    void IVirtioTransport.EnableQueue(int index, VirtioQueueRegisters queue) => EnableQueueLocked(index, queue);
    byte IVirtioTransport.ReadIsr() => ReadIsr();
    void IVirtioTransport.Kick(int queue) => Kick(queue);

    // ---- interrupts (called from worker and I/O threads; no transport lock) ----

    private void QueueInterrupt(int queue)
    {
        Interlocked.Or(ref _isr, 1);
        Raise(_common.QueueVector(queue));
    }

    private void ConfigInterrupt()
    {
        Interlocked.Or(ref _isr, 2);
        Raise(_common.ConfigVector);
    }

    private void Raise(int vector)
    {
        // With MSI-X on, "no vector" means no interrupt; without it, INTx with the ISR says why.
        if (_interrupts.MsixEnabled && vector == Virtio.NoVector) return;
        Interlocked.Increment(ref _interruptsRaised);
        _interrupts.Trigger(vector);
    }

    // Set from worker threads without the register lock (a reset holds that lock while it waits for them).
    private int _needsReset;

    private void QueueBroken(int queue)
    {
        if (Interlocked.Exchange(ref _needsReset, 1) != 0) return;
        ConfigInterrupt();
    }

    /// <summary>An exception escaped the device on its worker or I/O threads (queue -1: not tied to one). The engine
    /// carries on; the device, which can no longer vouch for its state, reports DEVICE_NEEDS_RESET (§2.1.2) with a
    /// configuration-change interrupt, and one line goes to the log.</summary>
    private void DeviceFault(int queue, Exception e)
    {
        QueueBroken(queue);
        _log.Write($"xhyve: {_device.Name}: device fault{(queue >= 0 ? $" on queue {queue}" : "")}: {e.GetType().Name}: {e.Message}; it needs a reset by the guest driver");
        Interlocked.Increment(ref _faults);   // last: a count that is seen means the fault has been fully handled
    }

    private byte StatusLocked => (byte)(_common.Status | (Volatile.Read(ref _needsReset) != 0 ? Virtio.StatusNeedsReset : 0));

    private byte ReadIsr()
    {
        int isr = Interlocked.Exchange(ref _isr, 0);
        _interrupts.DeassertIntx();
        return (byte)isr;
    }

    // ---- status and lifecycle (vCPU threads, under _lock) ----

    private void WriteStatus(byte value)
    {
        if (value == 0) { ResetLocked(); return; }
        byte old = _common.Status;
        if ((value & Virtio.StatusFeaturesOk) != 0 && (old & Virtio.StatusFeaturesOk) == 0 && (_common.DriverFeatures & ~OfferedFeatures) != 0)
            value &= unchecked((byte)~Virtio.StatusFeaturesOk);     // the driver accepted a feature we never offered
        _common.Status = (byte)(value & ~Virtio.StatusNeedsReset);
        if ((value & Virtio.StatusDriverOk) != 0 && (old & Virtio.StatusDriverOk) == 0) ActivateLocked();
    }

    private bool Legacy => (_common.DriverFeatures & Virtio.FeatureVersion1) == 0;

    private void ActivateLocked()
    {
        ulong driverFeatures = _common.DriverFeatures;
        bool eventIdx = (driverFeatures & Virtio.FeatureEventIdx) != 0, indirect = (driverFeatures & Virtio.FeatureIndirectDesc) != 0;
        var queues = _common.Queues;
        var active = new Virtqueue?[queues.Length];
        for (int i = 0; i < queues.Length; i++)
        {
            var q = queues[i];
            SplitQueue ring;
            if (Legacy)
            {
                if (q.LegacyPfn == 0) continue;
                var (desc, avail, used) = VirtioLegacyRegisters.RingAddresses(q.LegacyPfn, q.Size);
                ring = new SplitQueue(_memory, q.Size, new GuestAddress(desc), new GuestAddress(avail), new GuestAddress(used), eventIdx, indirect);
            }
            else
            {
                if (!q.Enabled) continue;
                ring = new SplitQueue(_memory, q.Size, new GuestAddress(q.Desc), new GuestAddress(q.Driver), new GuestAddress(q.Device), eventIdx, indirect);
            }
            if (!ring.RingsValid)
            {
                QueueBroken(i);   // rings outside RAM: nothing to run until the driver resets the device
                return;
            }
            active[i] = new Virtqueue(i, ring, QueueInterrupt, QueueBroken, DeviceFault, _chainErrors);
        }
        _device.Activate(_memory, driverFeatures, active);
        _active = true;
        // Kicks that arrived before DRIVER_OK were dropped by the worker; look at every queue once.
        foreach (var k in _kicks) k.Signal();
    }

    private void ResetLocked()
    {
        _active = false;
        _device.Reset();
        _common.Reset();
        Volatile.Write(ref _needsReset, 0);
        Interlocked.Exchange(ref _isr, 0);
        _interrupts.DeassertIntx();
    }

    private void Kick(int queue)
    {
        if ((uint)queue >= (uint)_kicks.Length) return;
        Interlocked.Increment(ref _notifications);
        _kicks[queue].Signal();
    }

    // ---- ioeventfd: doorbells follow the BARs ----

    public override void BarMapped(PciBar bar, ulong? address)
    {
        lock (_lock)
        {
            bool pio = bar.Index == LegacyBar;
            if (bar.Index != LegacyBar && bar.Index != ModernBar) return;
            for (int i = _attached.Count - 1; i >= 0; i--)
            {
                var a = _attached[i];
                if (a.Pio != pio) continue;
                _doorbells.Detach(a.Fd, a.Address, a.Width, a.Pio, a.Match);
                _attached.RemoveAt(i);
            }
            if (address is not { } at) return;
            for (int q = 0; q < _kicks.Length; q++)
            {
                // Legacy: one port, the queue index as data. Modern: one 16-bit doorbell per queue.
                var d = pio ? (at + (ulong)VirtioLegacyRegisters.QueueNotify, 2, true, (ulong?)(ulong)q) : (at + NotifyOffset + (ulong)q * NotifyMultiplier, 2, false, (ulong?)null);
                if (_doorbells.TryAttach(_kicks[q], d.Item1, d.Item2, d.Item3, d.Item4)) _attached.Add((d.Item1, d.Item2, d.Item3, d.Item4, _kicks[q]));
            }
        }
    }

    /// <summary>queue_enable: rings that are misaligned or outside RAM (virtio 1.2 §2.7) leave the queue disabled and
    /// the device asking for a reset, so no worker ever walks them.</summary>
    private void EnableQueueLocked(int index, VirtioQueueRegisters q)
    {
        var error = SplitQueue.CheckRings(_memory, q.Size, new GuestAddress(q.Desc), new GuestAddress(q.Driver), new GuestAddress(q.Device));
        if (error != QueueError.None)
        {
            Interlocked.Increment(ref _chainErrors[(int)error]);
            QueueBroken(index);
            return;
        }
        q.Enabled = true;
    }

    // ---- the modern interface (BAR 2): common configuration, ISR, device configuration, notifications ----

    private sealed class ModernRegisters(VirtioPciDevice t) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            data.Fill(0);
            switch (offset)
            {
                case < IsrOffset: t._common.Read((int)offset, data); break;
                case IsrOffset when data.Length == 1: data[0] = t.ReadIsr(); break;
                case >= DeviceConfigOffset and < NotifyOffset:
                    int at = (int)(offset - DeviceConfigOffset);
                    if (at + data.Length <= t._device.ConfigSize) t._device.ReadConfig(at, data);
                    break;
            }
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            switch (offset)
            {
                case < IsrOffset: t._common.Write((int)offset, data); break;
                case >= DeviceConfigOffset and < NotifyOffset:
                    int at = (int)(offset - DeviceConfigOffset);
                    if (at + data.Length <= t._device.ConfigSize) t._device.WriteConfig(at, data);
                    break;
                case >= NotifyOffset when (offset - NotifyOffset) % NotifyMultiplier == 0:
                    t.Kick((int)Math.Min((offset - NotifyOffset) / NotifyMultiplier, int.MaxValue));
                    break;
            }
        }
    }

    private bool _disposed;

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_active) ResetLocked();
        }
        _worker.Dispose();
        foreach (var k in _kicks) k.Dispose();
        _device.Dispose();
    }
}
