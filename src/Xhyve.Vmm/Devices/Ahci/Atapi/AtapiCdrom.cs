using System.Buffers.Binary;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Ahci.Atapi;

/// <summary>
/// An ATAPI CD/DVD-ROM drive (ahci-cd): the ATA commands a PACKET device answers (ATA8-ACS) and, inside PACKET,
/// the SCSI commands an MMC drive needs to be found, polled and read (SPC-3, MMC-5). Always read-only, 2048-byte
/// sectors; the medium is any block backend (an ISO file) and can be absent, inserted and ejected while the guest
/// runs, with the unit attention and media events a guest's driver waits for.
/// Transport-independent: the AHCI port hands over decoded registers, the packet and the PRDT as host buffers.
/// </summary>
/// <remarks>
/// Every command runs under one lock: ATAPI has no command queueing, so commands of a drive never overlap in a
/// well-behaved guest, and the lock makes the medium stay open for the whole of a read while the control API
/// swaps it. Nothing is allocated per command: responses are built in a preallocated buffer and a read's
/// scatter list is trimmed into a preallocated scratch (grown only when a guest first uses a longer PRDT).
/// </remarks>
public sealed partial class AtapiCdrom : IAhciDrive
{
    /// <summary>The MMC logical block size.</summary>
    public const int SectorSize = 2048;

    /// <summary>Media event codes of GET EVENT STATUS NOTIFICATION's media class (MMC-5).</summary>
    private const byte EventNone = 0, EventNewMedia = 2, EventMediaRemoval = 3;

    /// <summary>Interrupt reason at the end of a packet command (count register): I/O and C/D set.</summary>
    private const ushort EndOfCommand = 0x03;

    private const byte AtaDeviceReset = 0x08, AtaExecuteDiagnostic = 0x90, AtaPacket = 0xA0, AtaIdentifyPacket = 0xA1,
        AtaCheckPowerMode = 0xE5, AtaIdentify = 0xEC, AtaSetFeatures = 0xEF;

    private readonly Lock _gate = new();
    private readonly byte[] _response = new byte[512];
    private IoBuffer[] _scratch = new IoBuffer[256];
    private IBlockBackend? _medium;
    private bool _locked;
    private SenseCode _sense = SenseCode.None;
    private SenseCode? _unitAttention = SenseCode.PowerOnReset;    // a drive reports its power-on like a reset
    private byte _mediaEvent = EventNone;
    private byte _transferMode = 0x45;                              // UDMA 5 selected, as after a SATA power-on
    private bool _disposed;

    /// <summary>A drive holding <paramref name="medium"/> (it takes ownership), or an empty drive for null.</summary>
    /// <param name="name">For messages: "ahci-cd 0:3:0 port 0". The serial number is derived from it, so it stays
    /// the same across runs and media changes.</param>
    /// <param name="medium">The disc; its size in whole 2048-byte sectors is the capacity.</param>
    public AtapiCdrom(string name, IBlockBackend? medium)
    {
        Name = name;
        Serial = $"XHYVE-CD{StableHash.Fnv1a(name) & 0xFFFF_FFFF_FFFF:X12}";
        _medium = medium;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The serial number IDENTIFY PACKET DEVICE and INQUIRY's serial number page report (20 characters).</summary>
    public string Serial { get; }

    /// <inheritdoc/>
    public uint Signature => 0xEB140101;

    /// <inheritdoc/>
    public bool IsAtapi => true;

    /// <summary>The medium's path, or null for an empty drive.</summary>
    public string? MediumPath { get { lock (_gate) return _medium?.Path; } }

    /// <summary>True while the guest prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL).</summary>
    public bool Locked { get { lock (_gate) return _locked; } }

    /// <summary>The medium's capacity in 2048-byte sectors (a partial last sector is not readable), 0 when empty.</summary>
    public long Capacity { get { lock (_gate) return CapacityOf(_medium); } }

    /// <summary>Puts <paramref name="medium"/> in the drive (taking ownership), replacing and disposing any medium.
    /// The guest sees NOT READY TO READY CHANGE on its next command and a new-media event when it polls.</summary>
    public void Insert(IBlockBackend medium)
    {
        ArgumentNullException.ThrowIfNull(medium);
        lock (_gate)
        {
            if (_disposed)
            {
                medium.Dispose();       // it was handed over: nobody else will close it
                throw new ObjectDisposedException(Name);
            }
            var old = _medium;
            _medium = medium;
            _unitAttention = SenseCode.NotReadyToReadyChange;
            _mediaEvent = EventNewMedia;
            if (!ReferenceEquals(old, medium)) old?.Dispose();
        }
    }

    /// <summary>Removes and disposes the medium (the drive becomes empty; a media-removal event is posted).
    /// The host's eject is not refused while the guest holds the lock: the caller decides (see <see cref="Locked"/>).</summary>
    public void Eject()
    {
        lock (_gate) RemoveMedium();
    }

    private void RemoveMedium()
    {
        if (_medium is null) return;
        _medium.Dispose();
        _medium = null;
        _mediaEvent = EventMediaRemoval;
        if (_unitAttention == SenseCode.NotReadyToReadyChange) _unitAttention = null;   // the medium it announced is gone
    }

    /// <summary>A COMRESET or DEVICE RESET: clears the guest's lock and any pending sense, keeps the medium, and
    /// posts the POWER ON, RESET unit attention (0x29/0x00) real drives report after a reset.</summary>
    public void Reset()
    {
        lock (_gate) ResetLocked();
    }

    private void ResetLocked()
    {
        _locked = false;
        _sense = SenseCode.None;
        _unitAttention = SenseCode.PowerOnReset;
    }

    /// <summary>Disposes the medium; commands after this abort.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _medium?.Dispose();
            _medium = null;
        }
    }

    /// <inheritdoc/>
    public AtaCompletion Execute(in AtaCommand command, ReadOnlySpan<byte> packet, ReadOnlySpan<IoBuffer> data)
    {
        lock (_gate)
        {
            if (_disposed) return AtaCompletion.Abort();
            switch (command.Command)
            {
                case AtaPacket:
                    // Every MMC command is 12 bytes (IDENTIFY PACKET DEVICE word 0 says so); a shorter packet is the port's or the guest's fault.
                    return packet.Length < 12 ? AtaCompletion.Abort() : RunPacket(packet[..12], data);
                case AtaIdentifyPacket:
                    BuildIdentify(_response);
                    return ScatterList.Length(data) < 512 ? AtaCompletion.Abort() : AtaCompletion.Ok(ScatterList.CopyTo(_response, data));
                case AtaIdentify:
                    // ATA8-ACS: a PACKET device aborts IDENTIFY DEVICE and leaves its signature in the registers,
                    // which is how drivers tell an ATAPI device from a disk.
                    return new(AtaCompletion.StatusReady | AtaCompletion.StatusError, AtaCompletion.ErrorAbort, SignatureLba, SignatureCount, 0, 0);
                case AtaDeviceReset:
                    ResetLocked();
                    return new(0, 0x01, SignatureLba, SignatureCount, 0, 0);    // error 01h: no error detected (diagnostic code)
                case AtaExecuteDiagnostic:
                    return new(0, 0x01, SignatureLba, SignatureCount, 0, 0);
                case AtaCheckPowerMode:
                    return new(AtaCompletion.StatusReady, 0, 0, 0xFF, 0, 0);     // count FFh: active or idle
                case AtaSetFeatures:
                    return SetFeatures(command);
                default:
                    return AtaCompletion.Abort();
            }
        }
    }

    /// <summary>LBA (47:0) and COUNT of the ATAPI signature: LBA high EBh, mid 14h, low 01h; count 01h.</summary>
    private const ulong SignatureLba = 0xEB1401;
    private const ushort SignatureCount = 0x01;

    private AtaCompletion SetFeatures(in AtaCommand command)
    {
        if ((command.Features & 0xFF) != 0x03) return AtaCompletion.Ok();   // other subcommands (caching, APM...) have nothing to change here
        // Set transfer mode (ATA8-ACS): the mode in COUNT; only modes IDENTIFY claims are accepted.
        byte mode = (byte)command.Count;
        bool valid = (mode >> 3) switch
        {
            0 => mode is 0x00 or 0x01,          // PIO default mode
            1 => (mode & 7) <= 4,               // PIO mode n
            4 => (mode & 7) <= 2,               // multiword DMA n
            8 => (mode & 7) <= 6,               // Ultra DMA n
            _ => false,
        };
        if (!valid) return AtaCompletion.Abort();
        if ((mode >> 3) is 4 or 8) _transferMode = mode;
        return AtaCompletion.Ok();
    }

    /// <summary>One SCSI command from the packet: sense bookkeeping, unit attention, then the command.</summary>
    private AtaCompletion RunPacket(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        byte op = cdb[0];
        if (op != ScsiRequestSense) _sense = SenseCode.None;   // sense describes the last command only
        // SPC-3 / MMC-5: a pending unit attention fails the next command, except those that report
        // state without touching the medium (GESN reports the change as a media event instead).
        if (_unitAttention is { } ua && op is not (ScsiInquiry or ScsiRequestSense or ScsiGetEventStatus or ScsiGetConfiguration))
        {
            _unitAttention = null;
            return Check(ua);
        }
        return op switch
        {
            ScsiTestUnitReady => _medium is null ? Check(SenseCode.MediumNotPresent) : Done(0),
            ScsiRequestSense => RequestSense(cdb, data),
            ScsiInquiry => Inquiry(cdb, data),
            ScsiStartStopUnit => StartStopUnit(cdb),
            ScsiPreventAllow => PreventAllow(cdb),
            ScsiReadCapacity => ReadCapacity(data),
            ScsiRead10 => Read(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]), data),
            ScsiRead12 => Read(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]), data),
            ScsiReadToc => ReadToc(cdb, data),
            ScsiGetConfiguration => GetConfiguration(cdb, data),
            ScsiGetEventStatus => GetEventStatus(cdb, data),
            ScsiReadDiscInformation => ReadDiscInformation(cdb, data),
            ScsiModeSense10 => ModeSense(cdb, data),
            ScsiMechanismStatus => MechanismStatus(cdb, data),
            _ => Check(SenseCode.InvalidOperationCode),
        };
    }

    private const byte ScsiTestUnitReady = 0x00, ScsiRequestSense = 0x03, ScsiInquiry = 0x12, ScsiStartStopUnit = 0x1B,
        ScsiPreventAllow = 0x1E, ScsiReadCapacity = 0x25, ScsiRead10 = 0x28, ScsiReadToc = 0x43, ScsiGetConfiguration = 0x46,
        ScsiGetEventStatus = 0x4A, ScsiReadDiscInformation = 0x51, ScsiModeSense10 = 0x5A, ScsiRead12 = 0xA8,
        ScsiMechanismStatus = 0xBD;

    /// <summary>CHECK CONDITION: ERR (CHK) with the sense key in the error register's high nibble (ABRT too for an
    /// illegal request, as ATAPI drives do); the sense stays for REQUEST SENSE.</summary>
    private AtaCompletion Check(SenseCode sense)
    {
        _sense = sense;
        byte error = (byte)((sense.Key << 4) | (sense.Key == SenseCode.KeyIllegalRequest ? AtaCompletion.ErrorAbort : 0));
        return new(AtaCompletion.StatusReady | AtaCompletion.StatusError, error, 0, EndOfCommand, 0, 0);
    }

    private static AtaCompletion Done(int bytes) => new(AtaCompletion.StatusReady, 0, 0, EndOfCommand, 0, bytes);

    /// <summary>Sends the first <paramref name="length"/> bytes of <see cref="_response"/>, cut to the CDB's allocation
    /// length. A PRDT too short for that is a CHECK CONDITION, nothing is written.</summary>
    private AtaCompletion Reply(int length, int allocation, ReadOnlySpan<IoBuffer> data)
    {
        int n = Math.Min(length, allocation);
        if (ScatterList.Length(data) < n) return Check(SenseCode.InvalidFieldInCdb);
        return Done(ScatterList.CopyTo(_response.AsSpan(0, n), data));
    }

    private static long CapacityOf(IBlockBackend? medium) => medium is null ? 0 : medium.Size / SectorSize;

    private AtaCompletion Read(ulong lba, ulong sectors, ReadOnlySpan<IoBuffer> data)
    {
        if (_medium is not { } medium) return Check(SenseCode.MediumNotPresent);
        ulong capacity = (ulong)CapacityOf(medium);
        if (lba > capacity || sectors > capacity - lba) return Check(SenseCode.LbaOutOfRange);   // no overflow: both sides within capacity
        if (sectors == 0) return Done(0);
        ulong bytes = sectors * SectorSize;           // < 2^32 * 2^11: cannot overflow
        if (bytes > int.MaxValue) return Check(SenseCode.InvalidFieldInCdb);   // more than a completion can report (PRDBC)
        long total = ScatterList.Length(data);
        if (total < (long)bytes) return Check(SenseCode.InvalidFieldInCdb);
        ReadOnlySpan<IoBuffer> list = data;
        if (total != (long)bytes)
        {
            if (_scratch.Length < data.Length) _scratch = new IoBuffer[Math.Max(data.Length, _scratch.Length * 2)];
            int used = ScatterList.Prefix(data, (long)bytes, _scratch);
            list = _scratch.AsSpan(0, used);
        }
        try
        {
            medium.ReadVectored((long)lba * SectorSize, list);
        }
        catch (Exception e) when (e is IOException or StorageException or UnauthorizedAccessException or ArgumentException)
        {
            // A host read failure is the disc's problem as the guest sees it, not the VMM's.
            return Check(SenseCode.UnrecoveredReadError);
        }
        return Done((int)bytes);
    }
}
