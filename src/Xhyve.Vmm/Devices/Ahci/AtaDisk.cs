using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Ahci;

/// <summary>
/// An ATA disk (ahci-hd) over a block backend: the ACS-3 command subset SATA guests use (IDENTIFY, DMA and
/// NCQ reads and writes, FLUSH, TRIM, SET FEATURES, READ LOG EXT). ATA sectors are the logical sector size.
/// Safe for concurrent commands (NCQ): the only mutable state is the feature settings and the NCQ error log.
/// </summary>
public sealed class AtaDisk : IAhciDrive
{
    public const string Model = "XHYVE SATA DISK", FirmwareRevision = "1.0";
    public const int QueueDepth = 32;
    /// <summary>IDENTIFY word 105: 512-byte blocks of TRIM ranges one DATA SET MANAGEMENT may carry.</summary>
    public const int MaxDsmBlocks = 8;
    public const byte LogDirectory = 0x00, LogNcqError = 0x10;

    // ACS-3 command codes.
    public const byte ReadSectors = 0x20, ReadSectorsExt = 0x24, WriteSectors = 0x30, WriteSectorsExt = 0x34,
        ReadDma = 0xC8, ReadDmaExt = 0x25, WriteDma = 0xCA, WriteDmaExt = 0x35, ReadFpdmaQueued = 0x60, WriteFpdmaQueued = 0x61,
        ReadVerify = 0x40, ReadVerifyExt = 0x42, FlushCache = 0xE7, FlushCacheExt = 0xEA, DataSetManagement = 0x06,
        SetFeatures = 0xEF, ReadLogExt = 0x2F, ReadLogDmaExt = 0x47, IdentifyDevice = 0xEC, CheckPowerMode = 0xE5,
        StandbyImmediate = 0xE0, IdleImmediate = 0xE1, Standby = 0xE2, Idle = 0xE3, SetMultipleMode = 0xC6, Recalibrate = 0x10;

    private static readonly byte[] ModelBytes = Encoding.ASCII.GetBytes(Model), FirmwareBytes = Encoding.ASCII.GetBytes(FirmwareRevision);
    private readonly IBlockBackend _backend;
    private readonly int _sectorSize;
    private readonly int _physicalSectorSize;
    private readonly byte[] _serial;
    private readonly Lock _lock = new();
    private bool _writeCache = true, _readAhead = true;
    private byte _transferMode = 0x46;          // UDMA6 until SET FEATURES says otherwise
    private byte _multiple = 16;
    // The NCQ command error log (ACS-3 9.13): the last failed queued command, until the log is read.
    private bool _ncqErrorPending;
    private byte _ncqTag, _ncqStatus, _ncqError, _ncqDevice;
    private ulong _ncqLba;
    private ushort _ncqCount;

    /// <param name="name">For messages: "ahci-hd 0:4:0 port 0".</param>
    /// <param name="backend">The image; the disk owns and disposes it.</param>
    /// <param name="logicalSectorSize">The ATA sector (<see cref="SectorSize"/>).</param>
    /// <param name="physicalSectorSize">Reported in IDENTIFY word 106: a power-of-two multiple of the logical size.</param>
    public AtaDisk(string name, IBlockBackend backend, int logicalSectorSize, int physicalSectorSize)
    {
        ArgumentNullException.ThrowIfNull(backend);
        // The sizes virtio-blk accepts, so one set of block options fits both disk types.
        if (SectorSize.Problem(logicalSectorSize, physicalSectorSize) is { } problem) throw new ArgumentException($"{backend.Path}: {problem}");
        if (backend.Size % logicalSectorSize != 0)
            throw new StorageException($"{backend.Path}: the image size {backend.Size} is not a multiple of the {logicalSectorSize}-byte sector");
        Name = name;
        _backend = backend;
        _sectorSize = logicalSectorSize;
        _physicalSectorSize = physicalSectorSize;
        Sectors = (ulong)(backend.Size / logicalSectorSize);
        _serial = Encoding.ASCII.GetBytes(SerialFor(backend.Path));
    }

    public string Name { get; }
    public uint Signature => 0x0000_0101;
    public bool IsAtapi => false;
    /// <summary>Capacity in ATA (logical) sectors.</summary>
    public ulong Sectors { get; }
    public IBlockBackend Backend => _backend;

    /// <summary>The 20-character serial IDENTIFY reports: stable for one image path, different across paths
    /// (guests name disks by it: /dev/disk/by-id).</summary>
    public static string SerialFor(string path)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(path), hash);
        return "XH" + Convert.ToHexString(hash[..9]);
    }

    public void Reset()
    {
        lock (_lock)
        {
            // Power-on defaults (ACS-3 4.x: SET FEATURES settings revert unless 0x66 was given; we always revert).
            _writeCache = true; _readAhead = true; _transferMode = 0x46; _multiple = 16;
            _ncqErrorPending = false;
        }
    }

    public AtaCompletion Execute(in AtaCommand command, ReadOnlySpan<byte> packet, ReadOnlySpan<IoBuffer> data)
    {
        AtaCompletion result;
        try { result = Run(command, data); }
        catch (Exception)
        {
            // A backend failure (EIO, a vanished file): the guest sees a media error, the engine goes on.
            bool write = command.Command is WriteDma or WriteDmaExt or WriteFpdmaQueued or WriteSectors or WriteSectorsExt;
            result = AtaCompletion.Failed(write ? AtaCompletion.ErrorAbort : AtaCompletion.ErrorUncorrectable);
        }
        if (result.IsError && command.Command is ReadFpdmaQueued or WriteFpdmaQueued)
        {
            lock (_lock)
            {
                _ncqErrorPending = true;
                _ncqTag = (byte)((command.Count >> 3) & 0x1F);
                (_ncqStatus, _ncqError, _ncqLba, _ncqCount, _ncqDevice) = (result.Status, result.Error, command.Lba, command.Features, command.Device);
            }
        }
        return result;
    }

    private AtaCompletion Run(in AtaCommand c, ReadOnlySpan<IoBuffer> data)
    {
        switch (c.Command)
        {
            case IdentifyDevice:
                {
                    Span<byte> id = stackalloc byte[512];
                    BuildIdentify(id);
                    return ScatterList.Length(data) < 512 ? AtaCompletion.Abort() : AtaCompletion.Ok(ScatterList.CopyTo(id, data));
                }
            case ReadDma or ReadSectors:
                return Transfer(Lba28(c), Count28(c), data, write: false, fua: false);
            case WriteDma or WriteSectors:
                return Transfer(Lba28(c), Count28(c), data, write: true, fua: false);
            case ReadDmaExt or ReadSectorsExt:
                return Transfer(c.Lba, Count48(c.Count), data, write: false, fua: false);
            case WriteDmaExt or WriteSectorsExt:
                return Transfer(c.Lba, Count48(c.Count), data, write: true, fua: false);
            case ReadFpdmaQueued:
                return Transfer(c.Lba, Count48(c.Features), data, write: false, fua: false);
            case WriteFpdmaQueued:
                return Transfer(c.Lba, Count48(c.Features), data, write: true, fua: (c.Device & 0x80) != 0);
            case ReadVerify:
                return InRange(Lba28(c), Count28(c)) ? AtaCompletion.Ok() : AtaCompletion.Failed(AtaCompletion.ErrorIdNotFound);
            case ReadVerifyExt:
                return InRange(c.Lba, Count48(c.Count)) ? AtaCompletion.Ok() : AtaCompletion.Failed(AtaCompletion.ErrorIdNotFound);
            case FlushCache or FlushCacheExt:
                if (!_backend.ReadOnly) _backend.Flush();
                return AtaCompletion.Ok();
            case DataSetManagement:
                return Trim(c, data);
            case SetFeatures:
                return SetFeature(c);
            case ReadLogExt or ReadLogDmaExt:
                return ReadLog(c, data);
            case CheckPowerMode:
                return new AtaCompletion(AtaCompletion.StatusReady, 0, 0, 0xFF, 0, 0);   // active or idle
            case StandbyImmediate or IdleImmediate or Standby or Idle or Recalibrate:
                return AtaCompletion.Ok();
            case SetMultipleMode:
                {
                    int n = c.Count & 0xFF;
                    if (n == 0 || n > 16 || (n & (n - 1)) != 0) return AtaCompletion.Abort();
                    lock (_lock) _multiple = (byte)n;
                    return AtaCompletion.Ok();
                }
            default:
                return AtaCompletion.Abort();
        }
    }

    // A 28-bit command's LBA bits 27:24 travel in DEVICE 3:0 (ACS-3 7.1.x); the FIS's LBA (31:24) byte is not part of it.
    private static ulong Lba28(in AtaCommand c) => (c.Lba & 0xFF_FFFF) | ((ulong)(c.Device & 0x0F) << 24);
    private static long Count28(in AtaCommand c) => (c.Count & 0xFF) == 0 ? 256 : c.Count & 0xFF;
    private static long Count48(ushort count) => count == 0 ? 65536 : count;

    private bool InRange(ulong lba, long count) => lba <= Sectors && (ulong)count <= Sectors - lba;

    private AtaCompletion Transfer(ulong lba, long count, ReadOnlySpan<IoBuffer> data, bool write, bool fua)
    {
        if (!InRange(lba, count)) return AtaCompletion.Failed(AtaCompletion.ErrorIdNotFound);
        if (write && _backend.ReadOnly) return AtaCompletion.Abort();
        long bytes = count * _sectorSize;
        if (bytes > int.MaxValue) return AtaCompletion.Abort();   // 65536 sectors of 32 KiB and more: PRDBC is 32-bit
        long offset = (long)lba * _sectorSize;
        if (ScatterList.Length(data) == bytes) Move(offset, data, write);
        else if (data.Length <= 64)
        {
            Span<IoBuffer> part = stackalloc IoBuffer[data.Length];
            int used = ScatterList.Prefix(data, bytes, part);
            if (used < 0) return AtaCompletion.Abort();
            Move(offset, part[..used], write);
        }
        else
        {
            var rented = ArrayPool<IoBuffer>.Shared.Rent(data.Length);
            try
            {
                int used = ScatterList.Prefix(data, bytes, rented);
                if (used < 0) return AtaCompletion.Abort();
                Move(offset, rented.AsSpan(0, used), write);
            }
            finally { ArrayPool<IoBuffer>.Shared.Return(rented); }
        }
        // FUA, or a guest that turned the write cache off, asks for the data on stable storage before completion.
        if (write && (fua || !WriteCacheEnabled)) _backend.Flush();
        return AtaCompletion.Ok((int)bytes);
    }

    private void Move(long offset, ReadOnlySpan<IoBuffer> list, bool write)
    {
        if (write) _backend.WriteVectored(offset, list);
        else _backend.ReadVectored(offset, list);
    }

    /// <summary>DATA SET MANAGEMENT with TRIM: COUNT 512-byte blocks of 8-byte entries (LBA 47:0, length 63:48).
    /// Every range is checked before any is discarded, so a bad list changes nothing.</summary>
    private AtaCompletion Trim(in AtaCommand c, ReadOnlySpan<IoBuffer> data)
    {
        if ((c.Features & 1) == 0 || _backend.ReadOnly) return AtaCompletion.Abort();
        int blocks = c.Count;
        if (blocks == 0 || blocks > MaxDsmBlocks) return AtaCompletion.Abort();
        int bytes = blocks * 512;
        if (ScatterList.Length(data) < bytes) return AtaCompletion.Abort();
        Span<byte> list = stackalloc byte[MaxDsmBlocks * 512];
        list = list[..bytes];
        ScatterList.CopyFrom(data, list);
        for (int pass = 0; pass < 2; pass++)
        {
            for (int at = 0; at < bytes; at += 8)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(list[at..]);
                ulong lba = entry & 0xFFFF_FFFF_FFFF;
                long length = (long)(entry >> 48);
                if (length == 0) continue;            // unused entries are zero-length (ACS-3 7.5.3.2)
                if (pass == 0 && !InRange(lba, length)) return AtaCompletion.Abort();
                if (pass == 1) _backend.Discard((long)lba * _sectorSize, length * _sectorSize);
            }
        }
        return AtaCompletion.Ok(bytes);
    }

    private AtaCompletion SetFeature(in AtaCommand c)
    {
        byte sub = (byte)c.Features;
        lock (_lock)
        {
            switch (sub)
            {
                case 0x03:
                    {
                        byte mode = (byte)c.Count;
                        bool valid = mode is >= 0x08 and <= 0x0C or 0x00 or 0x01 or >= 0x20 and <= 0x22 or >= 0x40 and <= 0x46;
                        if (!valid) return AtaCompletion.Abort();
                        _transferMode = mode;
                        return AtaCompletion.Ok();
                    }
                case 0x02: _writeCache = true; return AtaCompletion.Ok();
                case 0x82: _writeCache = false; return AtaCompletion.Ok();
                case 0xAA: _readAhead = true; return AtaCompletion.Ok();
                case 0x55: _readAhead = false; return AtaCompletion.Ok();
                case 0x66 or 0xCC: return AtaCompletion.Ok();   // keep / revert to defaults at reset: we always revert
                default: return AtaCompletion.Abort();
            }
        }
    }

    public bool WriteCacheEnabled { get { lock (_lock) return _writeCache; } }

    /// <summary>READ LOG (DMA) EXT: LBA 7:0 the log address, LBA 15:8 and 39:32 the page, COUNT the pages.</summary>
    private AtaCompletion ReadLog(in AtaCommand c, ReadOnlySpan<IoBuffer> data)
    {
        byte log = (byte)c.Lba;
        int page = (int)((c.Lba >> 8) & 0xFF) | (int)((c.Lba >> 24) & 0xFF00);
        int pages = c.Count;
        if (pages == 0 || page != 0 || pages != 1) return AtaCompletion.Abort();   // both logs we keep are one page
        if (ScatterList.Length(data) < 512) return AtaCompletion.Abort();
        Span<byte> p = stackalloc byte[512];
        p.Clear();
        switch (log)
        {
            case LogDirectory:
                BinaryPrimitives.WriteUInt16LittleEndian(p, 0x0001);                 // GPL version
                BinaryPrimitives.WriteUInt16LittleEndian(p[(2 * LogNcqError)..], 1); // the NCQ error log: one page
                break;
            case LogNcqError:
                lock (_lock)
                {
                    if (_ncqErrorPending)
                    {
                        p[0] = _ncqTag;
                        p[2] = _ncqStatus; p[3] = _ncqError;
                        p[4] = (byte)_ncqLba; p[5] = (byte)(_ncqLba >> 8); p[6] = (byte)(_ncqLba >> 16);
                        p[7] = _ncqDevice;
                        p[8] = (byte)(_ncqLba >> 24); p[9] = (byte)(_ncqLba >> 32); p[10] = (byte)(_ncqLba >> 40);
                        p[12] = (byte)_ncqCount; p[13] = (byte)(_ncqCount >> 8);
                        _ncqErrorPending = false;   // reading the log ends the error condition (ACS-3 9.13)
                    }
                    else p[0] = 0x80;               // NQ: the last error was not a queued command
                }
                byte sum = 0;
                for (int i = 0; i < 511; i++) sum += p[i];
                p[511] = (byte)-sum;
                break;
            default:
                return AtaCompletion.Abort();
        }
        return AtaCompletion.Ok(ScatterList.CopyTo(p, data));
    }

    /// <summary>Fills the 256-word IDENTIFY DEVICE data (ACS-3 7.12.7).</summary>
    public void BuildIdentify(Span<byte> id)
    {
        if (id.Length < 512) throw new ArgumentException("IDENTIFY data is 512 bytes", nameof(id));
        id = id[..512];
        id.Clear();
        bool writeCache, readAhead; byte mode, multiple;
        lock (_lock) (writeCache, readAhead, mode, multiple) = (_writeCache, _readAhead, _transferMode, _multiple);

        ulong sectors = Sectors;
        ulong cylinders = Math.Min(sectors / (16 * 63), 16383);
        W(id, 0, 0x0040);                         // fixed ATA device
        W(id, 1, (int)cylinders); W(id, 3, 16); W(id, 6, 63);
        AtaString(id, 10, 20, _serial);
        AtaString(id, 23, 8, FirmwareBytes);
        AtaString(id, 27, 40, ModelBytes);
        W(id, 47, 0x8000 | 16);                   // READ/WRITE MULTIPLE: up to 16 sectors
        W(id, 49, 0x0F00);                        // LBA, DMA, IORDY
        W(id, 50, 0x4000);
        W(id, 53, 0x0006);                        // words 64-70 and 88 are valid
        W(id, 54, (int)cylinders); W(id, 55, 16); W(id, 56, 63);
        W(id, 57, (int)Math.Min(cylinders * 16 * 63, 0xFFFF)); W(id, 58, (int)((cylinders * 16 * 63) >> 16));
        W(id, 59, 0x0100 | multiple);
        ulong lba28 = Math.Min(sectors, 0x0FFF_FFFF);
        W(id, 60, (int)(lba28 & 0xFFFF)); W(id, 61, (int)(lba28 >> 16));
        W(id, 63, 0x0007 | (mode is >= 0x20 and <= 0x22 ? 0x100 << (mode - 0x20) : 0));
        W(id, 64, 0x0003);                        // PIO 3 and 4
        W(id, 65, 120); W(id, 66, 120); W(id, 67, 120); W(id, 68, 120);
        W(id, 75, QueueDepth - 1);
        W(id, 76, 0x010E);                        // SATA gen 1-3, NCQ
        W(id, 80, 0x07F0);                        // ATA/ATAPI-4 to ACS-3
        W(id, 82, 0x4000 | 0x0020 | 0x0040);      // NOP, write cache, look-ahead
        W(id, 83, 0x4000 | 0x2000 | 0x1000 | 0x0400);   // FLUSH CACHE EXT, FLUSH CACHE, 48-bit
        W(id, 84, 0x4000 | 0x0020);               // general purpose logging (READ LOG EXT)
        W(id, 85, 0x4000 | (writeCache ? 0x0020 : 0) | (readAhead ? 0x0040 : 0));
        W(id, 86, 0x2000 | 0x1000 | 0x0400);
        W(id, 87, 0x4000 | 0x0020);
        W(id, 88, 0x007F | (mode is >= 0x40 and <= 0x46 ? 0x100 << (mode - 0x40) : 0));
        W(id, 100, (int)(sectors & 0xFFFF)); W(id, 101, (int)((sectors >> 16) & 0xFFFF));
        W(id, 102, (int)((sectors >> 32) & 0xFFFF)); W(id, 103, (int)((sectors >> 48) & 0xFFFF));
        W(id, 105, MaxDsmBlocks);
        int perPhysical = _physicalSectorSize / _sectorSize;
        W(id, 106, 0x4000 | (perPhysical > 1 ? 0x2000 | System.Numerics.BitOperations.Log2((uint)perPhysical) : 0) | (_sectorSize > 512 ? 0x1000 : 0));
        if (_sectorSize > 512)
        {
            int words = _sectorSize / 2;      // words 117-118: the logical sector size in words
            W(id, 117, words & 0xFFFF); W(id, 118, words >> 16);
        }
        W(id, 169, 0x0001);                       // TRIM
        W(id, 217, 0x0001);                       // non-rotating medium
        W(id, 222, 0x1000 | 0x007F);              // serial transport, SATA 1.0a to 3.1
        id[510] = 0xA5;
        byte sum = 0;
        for (int i = 0; i < 511; i++) sum += id[i];
        id[511] = (byte)-sum;
    }

        private static void W(Span<byte> id, int word, int value) => BinaryPrimitives.WriteUInt16LittleEndian(id[(2 * word)..], (ushort)value);

    /// <summary>An ATA string: space padded, two characters per word with the first in the high byte.</summary>
    private static void AtaString(Span<byte> id, int word, int length, ReadOnlySpan<byte> text)
    {
        for (int i = 0; i < length; i++)
        {
            byte ch = i < text.Length ? text[i] : (byte)' ';
            id[2 * word + (i ^ 1)] = ch;
        }
    }

    public void Dispose() => _backend.Dispose();
}
