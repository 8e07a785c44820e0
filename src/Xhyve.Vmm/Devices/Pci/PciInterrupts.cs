using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>Delivers a function's message-signalled interrupts to the platform. Called under the function's
/// interrupt lock, so one sink sees one vector's messages in order.</summary>
public interface IMsiSink
{
    /// <summary>Raises the message (<paramref name="address"/>, <paramref name="data"/>) the guest programmed
    /// into <paramref name="vector"/>.</summary>
    void Signal(int vector, ulong address, uint data);
}

/// <summary>
/// A function's interrupt machinery: MSI-X (table and PBA in a BAR, per-vector and function masks),
/// MSI (single or multiple message) and INTx, chosen by what the guest enabled (PCI 3.0 §6.8).
/// A device calls <see cref="Trigger"/> and never knows which one is in use.
/// </summary>
public sealed class PciInterrupts
{
    public const byte MsiCapabilityId = 0x05, MsixCapabilityId = 0x11;
    private const ushort MsiEnable = 1, Msi64Bit = 1 << 7;
    private const ushort MsixEnable = 1 << 15, MsixFunctionMask = 1 << 14;

    private readonly PciConfigSpace _config;
    private readonly IMsiSink _msi;
    private readonly IInterruptLine _intx;
    private readonly Lock _lock = new();
    private readonly int _msiCap, _msixCap;
    private readonly MsixTable? _table;
    private bool _intxLevel;
    private long _delivered, _masked;

    private PciInterrupts(PciConfigSpace config, IMsiSink msi, IInterruptLine intx, int msiCap, int msixCap, MsixTable? table)
    {
        _config = config; _msi = msi; _intx = intx; _msiCap = msiCap; _msixCap = msixCap; _table = table;
        table?.Attach(this);
    }

    public long Delivered => Interlocked.Read(ref _delivered);
    public long MaskedTriggers => Interlocked.Read(ref _masked);

    /// <summary>Adds the capabilities: MSI-X with <paramref name="msixVectors"/> (table in BAR
    /// <paramref name="msixBar"/>; 0 vectors for none) and MSI with up to <paramref name="msiVectors"/>.</summary>
    public static PciInterrupts Create(PciConfigSpace config, IMsiSink msi, IInterruptLine intx, int msiVectors, int msixVectors, int msixBar, out MsixTable? table)
    {
        config.Define(PciConfigSpace.InterruptPin, [1], [0]);   // INTA#
        int msiCap = 0, msixCap = 0;
        table = null;
        if (msiVectors > 0)
        {
            int log2 = (int)Math.Log2(msiVectors);
            // Message control, address (64-bit), data: 12 bytes of body after id/next... plus 2 padding.
            Span<byte> body = stackalloc byte[12], mask = stackalloc byte[12];
            BinaryPrimitives.WriteUInt16LittleEndian(body, (ushort)(Msi64Bit | (log2 << 1)));
            BinaryPrimitives.WriteUInt16LittleEndian(mask, (ushort)(MsiEnable | 0x70));
            mask[2..10].Fill(0xFF); mask[2] = 0xFC;                  // address (dword aligned), high dword
            mask[10] = 0xFF; mask[11] = 0xFF;                        // data
            msiCap = config.AddCapability(MsiCapabilityId, body, mask);
        }
        if (msixVectors > 0)
        {
            table = new MsixTable(msixVectors);
            Span<byte> body = stackalloc byte[10], mask = stackalloc byte[10];
            BinaryPrimitives.WriteUInt16LittleEndian(body, (ushort)(msixVectors - 1));
            BinaryPrimitives.WriteUInt16LittleEndian(mask, MsixEnable | MsixFunctionMask);
            BinaryPrimitives.WriteUInt32LittleEndian(body[2..], (uint)msixBar);                               // table at offset 0
            BinaryPrimitives.WriteUInt32LittleEndian(body[6..], (uint)(MsixTable.PbaOffset | msixBar));        // PBA
            msixCap = config.AddCapability(MsixCapabilityId, body, mask);
        }
        return new PciInterrupts(config, msi, intx, msiCap, msixCap, table);
    }

    /// <summary>Whether the driver turned MSI-X on (virtio then uses per-queue vectors instead of the ISR).</summary>
    public bool MsixEnabled => (MsixControl & MsixEnable) != 0;

    private ushort MsixControl => _msixCap == 0 ? (ushort)0 : _config.ReadWord(_msixCap + 2);
    private ushort MsiControl => _msiCap == 0 ? (ushort)0 : _config.ReadWord(_msiCap + 2);

    /// <summary>Signals interrupt <paramref name="vector"/>; with neither MSI-X nor MSI enabled, asserts INTx
    /// (until <see cref="DeassertIntx"/>).</summary>
    public void Trigger(int vector)
    {
        lock (_lock)
        {
            ushort msix = MsixControl;
            if ((msix & MsixEnable) != 0)
            {
                if (_table == null || vector < 0 || vector >= _table.Vectors) return;
                if ((msix & MsixFunctionMask) != 0 || _table.IsMasked(vector))
                {
                    _table.SetPending(vector, true);
                    Interlocked.Increment(ref _masked);
                    return;
                }
                var (address, data) = _table.Message(vector);
                Deliver(vector, address, data);
                return;
            }
            ushort msi = MsiControl;
            if ((msi & MsiEnable) != 0)
            {
                uint enabled = 1u << ((msi >> 4) & 7);
                ulong address = _config.ReadDword(_msiCap + 4) | ((ulong)_config.ReadDword(_msiCap + 8) << 32);
                uint data = _config.ReadWord(_msiCap + 12);
                // Multiple messages: the low bits of the data select the vector. A vector the guest did not
                // enable (or virtio's "no vector", which is all there is without MSI-X) uses message 0.
                int message = vector >= 0 && (uint)vector < enabled ? vector : 0;
                data = (data & ~(enabled - 1)) | (uint)message;
                Deliver(message, address, data);
                return;
            }
            SetIntx(true);
        }
    }

    /// <summary>The device's INTx condition cleared (e.g. the driver acknowledged it).</summary>
    public void DeassertIntx() { lock (_lock) SetIntx(false); }

    private void SetIntx(bool level)
    {
        bool disabled = (_config.CommandRegister & PciConfigSpace.CommandIntxDisable) != 0;
        _config.SetBits(PciConfigSpace.Status, (byte)PciConfigSpace.StatusInterrupt, level);
        bool line = level && !disabled;
        if (line == _intxLevel) return;
        _intxLevel = line;
        _intx.Set(line);
    }

    private void Deliver(int vector, ulong address, uint data)
    {
        // Only messages aimed at the local APIC window make sense; anything else is a guest bug to drop.
        if ((address & 0xFFF0_0000) != 0xFEE0_0000) return;
        Interlocked.Increment(ref _delivered);
        _msi.Signal(vector, address, data);
    }

    /// <summary>Re-evaluates masks after the guest changed configuration or the MSI-X table:
    /// delivers pending vectors that became unmasked, and applies INTx disable.</summary>
    public void Reevaluate()
    {
        lock (_lock)
        {
            bool intxWanted = (_config.ReadWord(PciConfigSpace.Status) & PciConfigSpace.StatusInterrupt) != 0;
            SetIntx(intxWanted);
            ushort msix = MsixControl;
            if (_table == null || (msix & MsixEnable) == 0 || (msix & MsixFunctionMask) != 0) return;
            for (int v = 0; v < _table.Vectors; v++)
            {
                if (!_table.IsPending(v) || _table.IsMasked(v)) continue;
                _table.SetPending(v, false);
                var (address, data) = _table.Message(v);
                Deliver(v, address, data);
            }
        }
    }
}

/// <summary>The MSI-X table (16 bytes per vector: address, data, vector control) and, at
/// <see cref="PbaOffset"/>, the pending-bit array, as one BAR region.</summary>
public sealed class MsixTable : IBusDevice
{
    public const int PbaOffset = 0x800;
    public const ulong BarSize = 0x1000;
    private readonly byte[] _entries;
    private readonly ulong[] _pending;
    private readonly Lock _lock = new();
    private PciInterrupts? _owner;

    public int Vectors { get; }

    public MsixTable(int vectors)
    {
        if (vectors is < 1 or > 128) throw new ArgumentOutOfRangeException(nameof(vectors), "1 to 128 MSI-X vectors fit the table BAR");
        Vectors = vectors;
        _entries = new byte[16 * vectors];
        _pending = new ulong[(vectors + 63) / 64];
        for (int v = 0; v < vectors; v++) _entries[16 * v + 12] = 1; // vectors start masked
    }

    internal void Attach(PciInterrupts owner) => _owner = owner;

    public bool IsMasked(int v) { lock (_lock) return (_entries[16 * v + 12] & 1) != 0; }
    public bool IsPending(int v) { lock (_lock) return (_pending[v / 64] & (1UL << (v % 64))) != 0; }
    public void SetPending(int v, bool pending)
    {
        lock (_lock)
        {
            if (pending) _pending[v / 64] |= 1UL << (v % 64);
            else _pending[v / 64] &= ~(1UL << (v % 64));
        }
    }

    public (ulong Address, uint Data) Message(int v)
    {
        lock (_lock)
        {
            var e = _entries.AsSpan(16 * v);
            return (BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[8..]));
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        data.Fill(0);
        if (!(data.Length is 4 or 8) || (offset & (ulong)(data.Length - 1)) != 0) return;
        lock (_lock)
        {
            if (offset + (ulong)data.Length <= (ulong)_entries.Length) { _entries.AsSpan((int)offset, data.Length).CopyTo(data); return; }
            if (offset >= PbaOffset && offset - PbaOffset < (ulong)(8 * _pending.Length))
            {
                Span<byte> pba = stackalloc byte[8 * _pending.Length];
                for (int i = 0; i < _pending.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(pba[(8 * i)..], _pending[i]);
                int at = (int)(offset - PbaOffset);
                pba.Slice(at, Math.Min(data.Length, pba.Length - at)).CopyTo(data);
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!(data.Length is 4 or 8) || (offset & (ulong)(data.Length - 1)) != 0) return;
        lock (_lock)
        {
            if (offset + (ulong)data.Length > (ulong)_entries.Length) return; // the PBA is read-only
            data.CopyTo(_entries.AsSpan((int)offset));
            // Only the mask bit of vector control is defined; the rest reads as written zero.
            if ((offset & 0xF) <= 12 && (offset & 0xF) + (ulong)data.Length > 12)
            {
                int control = (int)(offset & ~0xFUL) + 12;
                _entries[control] &= 1;
                _entries[control + 1] = _entries[control + 2] = _entries[control + 3] = 0;
            }
        }
        _owner?.Reevaluate();
    }
}
