using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Devices.FwCfg;

/// <summary>
/// QEMU's firmware configuration device on its x86 ports (QEMU docs/specs/fw_cfg.rst), registered over
/// 12 ports from 0x510: offset 0 selects an item (16-bit write, which also rewinds it), offset 1 reads
/// the selected item byte by byte (zeros past its end), offsets 4-11 take a big-endian FWCfgDmaAccess
/// address (the high half at 4, the low half at 8 starts the transfer; one 64-bit write at 4 also does)
/// and read back the "QEMU CFG" signature. Items are read-only: a DMA write is answered with ERROR.
/// </summary>
public sealed class FwCfgDevice : IBusDevice
{
    private const int DataOffset = 1, DmaHighOffset = 4, DmaLowOffset = 8;
    private const int DmaAccessSize = 16;
    private const int MaxChunk = 1 << 30;

    private readonly FwCfgItem?[] _items;
    private readonly IGuestMemory _memory;
    private readonly Lock _gate = new();
    private FwCfgItem? _current;
    private long _offset;
    private uint _dmaHigh;
    private long _dmaTransfers, _dmaErrors, _ignoredAccesses;

    public FwCfgDevice(FwCfgItems items, IGuestMemory memory)
    {
        _items = items.ToTable();
        _memory = memory;
    }

    /// <summary>DMA transfers started (whether or not they succeeded).</summary>
    public long DmaTransfers => Interlocked.Read(ref _dmaTransfers);

    /// <summary>DMA transfers that ended with ERROR or whose descriptor was outside RAM.</summary>
    public long DmaErrors => Interlocked.Read(ref _dmaErrors);

    /// <summary>Accesses of a width or at an offset the device does not decode (dropped; reads see zeros).</summary>
    public long IgnoredAccesses => Interlocked.Read(ref _ignoredAccesses);

    public void Read(ulong offset, Span<byte> data)
    {
        lock (_gate)
        {
            if (offset == DataOffset)
            {
                foreach (ref byte b in data) b = NextByte();
                return;
            }
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                data[i] = at is >= DmaHighOffset and < DmaHighOffset + 8
                    ? (byte)(FwCfgSelectors.DmaSignature >> (int)(8 * (7 - (at - DmaHighOffset))))
                    : (byte)0;
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            switch (offset, data.Length)
            {
                case (0, 2): Select(BinaryPrimitives.ReadUInt16LittleEndian(data)); break;
                case (DmaHighOffset, 4): _dmaHigh = BinaryPrimitives.ReadUInt32BigEndian(data); break;
                case (DmaLowOffset, 4): Dma(((ulong)_dmaHigh << 32) | BinaryPrimitives.ReadUInt32BigEndian(data)); break;
                case (DmaHighOffset, 8): Dma(BinaryPrimitives.ReadUInt64BigEndian(data)); break;
                case (DataOffset, 1): break;   // data writes are ignored (QEMU 2.4+)
                default: Interlocked.Increment(ref _ignoredAccesses); break;
            }
        }
    }

    private void Select(ushort selector)
    {
        // The write-channel bit names the same item; arch-local items (bit 15) are not served.
        int key = selector & ~FwCfgSelectors.WriteChannelBit;
        _current = key < _items.Length ? _items[key] : null;
        _offset = 0;
    }

    private byte NextByte()
    {
        if (_current == null || _offset >= _current.Length) return 0;
        Span<byte> one = stackalloc byte[1];
        _current.Read(_offset++, one);
        return one[0];
    }

    private void Dma(ulong accessAddress)
    {
        _dmaHigh = 0;   // the address register clears after each transfer
        Interlocked.Increment(ref _dmaTransfers);
        Span<byte> access = stackalloc byte[DmaAccessSize];
        if (!_memory.TryRead(new GuestAddress(accessAddress), access))
        {
            Interlocked.Increment(ref _dmaErrors);   // no descriptor, so nowhere to report the error
            return;
        }
        uint control = BinaryPrimitives.ReadUInt32BigEndian(access);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(access[4..]);
        ulong address = BinaryPrimitives.ReadUInt64BigEndian(access[8..]);
        uint status = Transfer(control, length, address);
        if (status != 0) Interlocked.Increment(ref _dmaErrors);
        Span<byte> result = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(result, status);
        _memory.TryWrite(new GuestAddress(accessAddress), result);
    }

    /// <summary>One FWCfgDmaAccess: select, then read, skip or (refused) write; 0 or <see cref="FwCfgSelectors.DmaError"/>.</summary>
    private uint Transfer(uint control, uint length, ulong address)
    {
        if ((control & FwCfgSelectors.DmaSelect) != 0) Select((ushort)(control >> 16));
        bool read;
        if ((control & FwCfgSelectors.DmaRead) != 0) read = true;
        else if ((control & FwCfgSelectors.DmaWrite) != 0) return FwCfgSelectors.DmaError;   // every item is read-only
        else if ((control & FwCfgSelectors.DmaSkip) != 0) read = false;
        else return 0;
        if (length == 0) return 0;

        long available = _current == null ? 0 : Math.Max(0, _current.Length - _offset);
        long fromItem = Math.Min(length, available);
        if (read)
        {
            // The whole destination must be RAM (one region) before a byte is written.
            if (!InOneRegion(address, length)) return FwCfgSelectors.DmaError;
            long done = 0;
            while (done < length)
            {
                int chunk = (int)Math.Min(length - done, MaxChunk);
                if (!_memory.TryGetSpan(new GuestAddress(address + (ulong)done), chunk, out var span)) return FwCfgSelectors.DmaError;
                int copy = (int)Math.Clamp(fromItem - done, 0, chunk);
                if (copy > 0) _current!.Read(_offset + done, span[..copy]);
                span[copy..].Clear();   // past the item's end the guest reads zeros
                done += chunk;
            }
        }
        _offset += fromItem;
        return 0;
    }

    private bool InOneRegion(ulong address, ulong length)
    {
        if (address + length < address) return false;   // wraps around the top of the address space
        var regions = _memory.Regions;
        for (int i = 0; i < regions.Count; i++)
            if (regions[i].Contains(address, length)) return true;
        return false;
    }
}
