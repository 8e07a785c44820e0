using System.Buffers.Binary;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Ahci.Atapi;

// The data-in commands: each builds its whole response in _response (under the drive's lock) and Reply cuts it to
// the allocation length. Length fields always give the full length, as SPC says, so a guest can ask again.
public sealed partial class AtapiCdrom
{
    /// <summary>The model IDENTIFY PACKET DEVICE reports.</summary>
    public const string Model = "XHYVE DVD-ROM";
    /// <summary>INQUIRY's vendor identification.</summary>
    public const string Vendor = "XHYVE";
    /// <summary>INQUIRY's product identification.</summary>
    public const string Product = "DVD-ROM";
    /// <summary>The firmware revision of IDENTIFY PACKET DEVICE and INQUIRY.</summary>
    public const string Revision = "1.0";

    /// <summary>The largest standard CD (80 minutes of 75 sectors a second): a larger medium is reported as a DVD.</summary>
    public const long CdMaxSectors = 80 * 60 * 75;

    /// <summary>IDENTIFY PACKET DEVICE data (ATA8-ACS, the PACKET device words).</summary>
    private void BuildIdentify(byte[] b)
    {
        b.AsSpan(0, 512).Clear();
        void W(int word, int value) => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(word * 2), (ushort)value);
        W(0, 0x85C0);               // ATAPI, device type 5 (CD/DVD), removable, DRQ within 50 us, 12-byte packets
        AtaString(b, 10, 20, Serial);
        AtaString(b, 23, 8, Revision);
        AtaString(b, 27, 40, Model);
        W(49, 0x0F00);              // IORDY, IORDY may be disabled, LBA, DMA supported
        W(53, 0x0006);              // words 64-70 and 88 valid
        int mw = (_transferMode >> 3) == 4 ? 1 << (8 + (_transferMode & 7)) : 0;
        W(63, 0x0007 | mw);         // multiword DMA 0-2 supported, the selected one
        W(64, 0x0003);              // PIO 3 and 4
        W(65, 120); W(66, 120); W(67, 120); W(68, 120);     // cycle times (ns) of the fastest modes
        W(76, 0x0006);              // SATA Gen1 and Gen2 speeds
        W(80, 0x01F0);              // ATA/ATAPI-4 to ATA8-ACS
        W(82, 0x4210);              // NOP, DEVICE RESET, PACKET feature sets
        W(83, 0x4000);
        W(84, 0x4000);
        W(85, 0x4210);
        W(87, 0x4000);
        int udma = (_transferMode >> 3) == 8 ? 1 << (8 + (_transferMode & 7)) : 0;
        W(88, 0x007F | udma);       // Ultra DMA 0-6 supported, the selected one
        // Word 255: signature A5h and a checksum making the 512 bytes sum to 0 (ATA8-ACS).
        b[510] = 0xA5;
        byte sum = 0;
        for (int i = 0; i < 511; i++) sum += b[i];
        b[511] = (byte)-sum;
    }

    /// <summary>An ATA string: space-padded, two characters a word with the first in the high byte.</summary>
    private static void AtaString(Span<byte> b, int word, int length, string text)
    {
        for (int i = 0; i < length; i++)
        {
            byte c = i < text.Length ? (byte)text[i] : (byte)' ';
            b[word * 2 + (i ^ 1)] = c;
        }
    }

    /// <summary>ASCII, space-padded to <paramref name="length"/> (SCSI strings).</summary>
    private static void ScsiString(Span<byte> b, int length, string text)
    {
        for (int i = 0; i < length; i++) b[i] = i < text.Length ? (byte)text[i] : (byte)' ';
    }

    private AtaCompletion RequestSense(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        if ((cdb[1] & 0x01) != 0) return Check(SenseCode.InvalidFieldInCdb);   // DESC: descriptor format is not supported
        // The last command's sense; else a pending unit attention (reported here, so cleared); else the state.
        SenseCode sense = _sense;
        if (sense == SenseCode.None && _unitAttention is { } ua) { sense = ua; _unitAttention = null; }
        else if (sense == SenseCode.None && _medium is null) sense = SenseCode.MediumNotPresent;
        _sense = SenseCode.None;
        var r = _response.AsSpan(0, 18);
        r.Clear();
        r[0] = 0x70;                // current error, fixed format
        r[2] = sense.Key;
        r[7] = 10;                  // additional sense length: bytes 8-17
        r[12] = sense.Asc;
        r[13] = sense.Ascq;
        return Reply(18, cdb[4], data);
    }


    private AtaCompletion Inquiry(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[3..]);
        bool evpd = (cdb[1] & 0x01) != 0;
        if ((cdb[1] & 0x02) != 0 || (!evpd && cdb[2] != 0)) return Check(SenseCode.InvalidFieldInCdb);   // CmdDt, or a page without EVPD
        var r = _response.AsSpan();
        r[..96].Clear();
        r[0] = 0x05;                // peripheral device type 5: CD/DVD
        if (!evpd)
        {
            r[1] = 0x80;            // RMB: removable medium
            r[2] = 0x05;            // SPC-3
            r[3] = 0x02;            // response data format 2
            r[4] = 36 - 5;          // additional length
            ScsiString(r[8..], 8, Vendor);
            ScsiString(r[16..], 16, Product);
            ScsiString(r[32..], 4, Revision);
            return Reply(36, allocation, data);
        }
        r[1] = cdb[2];
        switch (cdb[2])
        {
            case 0x00:              // supported VPD pages
                r[3] = 3;
                r[4] = 0x00; r[5] = 0x80; r[6] = 0x83;
                return Reply(7, allocation, data);
            case 0x80:              // unit serial number
                r[3] = (byte)Serial.Length;
                ScsiString(r[4..], Serial.Length, Serial);
                return Reply(4 + Serial.Length, allocation, data);
            case 0x83:              // device identification: one T10 vendor ID designator, vendor + product + serial
                int idLength = 8 + 16 + Serial.Length;
                r[4] = 0x02;        // code set: ASCII
                r[5] = 0x01;        // association: the logical unit; designator type 1: T10 vendor ID
                r[7] = (byte)idLength;
                ScsiString(r[8..], 8, Vendor);
                ScsiString(r[16..], 16, Product);
                ScsiString(r[32..], Serial.Length, Serial);
                BinaryPrimitives.WriteUInt16BigEndian(r[2..], (ushort)(4 + idLength));
                return Reply(8 + idLength, allocation, data);
            default:
                return Check(SenseCode.InvalidFieldInCdb);
        }
    }

    private AtaCompletion ReadCapacity(ReadOnlySpan<IoBuffer> data)
    {
        if (_medium is null) return Check(SenseCode.MediumNotPresent);
        long capacity = CapacityOf(_medium);
        // The last LBA; FFFFFFFFh says "use READ CAPACITY(16)" for a medium too large to tell (SBC-3).
        uint last = capacity == 0 ? 0 : capacity - 1 > uint.MaxValue ? uint.MaxValue : (uint)(capacity - 1);
        BinaryPrimitives.WriteUInt32BigEndian(_response, last);
        BinaryPrimitives.WriteUInt32BigEndian(_response.AsSpan(4), SectorSize);
        return Reply(8, 8, data);
    }

    private AtaCompletion StartStopUnit(ReadOnlySpan<byte> cdb)
    {
        bool loadEject = (cdb[4] & 0x02) != 0, start = (cdb[4] & 0x01) != 0;
        if ((cdb[4] & 0xF0) != 0 || !loadEject || start) return Done(0);   // power conditions, spin up/down, load: nothing to do
        if (_locked) return Check(SenseCode.MediumRemovalPrevented);
        RemoveMedium();
        return Done(0);
    }

    private AtaCompletion PreventAllow(ReadOnlySpan<byte> cdb)
    {
        _locked = (cdb[4] & 0x01) != 0;     // bit 0 Prevent; bit 1 (persistent prevent) is the same for one initiator
        return Done(0);
    }

    /// <summary>MSF address of <paramref name="lba"/> (+150 sectors of lead-in gap), saturated at FF:59:74.</summary>
    private static void WriteAddress(Span<byte> at, long lba, bool msf)
    {
        if (!msf) { BinaryPrimitives.WriteUInt32BigEndian(at, (uint)Math.Min(lba, uint.MaxValue)); return; }
        long f = lba + 150;
        long minutes = f / (60 * 75);
        if (minutes > 0xFF) { at[0] = 0; at[1] = 0xFF; at[2] = 59; at[3] = 74; return; }
        at[0] = 0;
        at[1] = (byte)minutes;
        at[2] = (byte)(f / 75 % 60);
        at[3] = (byte)(f % 75);
    }

    private AtaCompletion ReadToc(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        if (_medium is null) return Check(SenseCode.MediumNotPresent);
        bool msf = (cdb[1] & 0x02) != 0;
        int format = cdb[2] & 0x0F;
        if (format == 0) format = cdb[9] >> 6;      // the format's older place (SFF-8020: control byte bits 7-6)
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        long capacity = CapacityOf(_medium);
        var r = _response.AsSpan();
        r[..32].Clear();
        r[2] = 1; r[3] = 1;             // first and last track (format 0), first and last session (format 1)
        switch (format)
        {
            case 0:
            {
                byte track = cdb[6];
                int length = 4;
                if (track > 1 && track != 0xAA) return Check(SenseCode.InvalidFieldInCdb);   // there is only track 1
                if (track <= 1) length = TocEntry(r, length, 1, 0, msf);
                length = TocEntry(r, length, 0xAA, capacity, msf);     // lead-out
                BinaryPrimitives.WriteUInt16BigEndian(r, (ushort)(length - 2));
                return Reply(length, allocation, data);
            }
            case 1:                     // session information: the first track of the last (only) session
                TocEntry(r, 4, 1, 0, msf);
                BinaryPrimitives.WriteUInt16BigEndian(r, 10);
                return Reply(12, allocation, data);
            default:
                return Check(SenseCode.InvalidFieldInCdb);
        }
    }

    /// <summary>One 8-byte track descriptor: ADR 1 (position), control 4 (data track, copy prohibited).</summary>
    private static int TocEntry(Span<byte> r, int at, byte track, long lba, bool msf)
    {
        r[at] = 0;
        r[at + 1] = 0x14;
        r[at + 2] = track;
        r[at + 3] = 0;
        WriteAddress(r[(at + 4)..], lba, msf);
        return at + 8;
    }

    private const ushort ProfileNone = 0x0000, ProfileCdRom = 0x0008, ProfileDvdRom = 0x0010;

    private ushort CurrentProfile => _medium is null ? ProfileNone : CapacityOf(_medium) > CdMaxSectors ? ProfileDvdRom : ProfileCdRom;

    private AtaCompletion GetConfiguration(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        int rt = cdb[1] & 0x03;
        if (rt == 3) return Check(SenseCode.InvalidFieldInCdb);
        int start = BinaryPrimitives.ReadUInt16BigEndian(cdb[2..]);
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        ushort profile = CurrentProfile;
        bool present = _medium is not null;
        var r = _response.AsSpan();
        r[..128].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(r[6..], profile);
        int length = 8;
        // Features in ascending code order (MMC-5), each: code, version/persistent/current, additional length.
        for (int code = 0; code <= 0x10; code++)
        {
            if (code is not (0x00 or 0x01 or 0x02 or 0x03 or 0x10)) continue;
            bool current = code != 0x10 || present;        // only random reading depends on a medium
            bool wanted = rt switch { 0 => code >= start, 1 => code >= start && current, _ => code == start };
            if (!wanted) continue;
            var f = r[length..];
            BinaryPrimitives.WriteUInt16BigEndian(f, (ushort)code);
            switch (code)
            {
                case 0x00:          // profile list: DVD-ROM, CD-ROM
                    f[2] = 0x03;    // version 0, persistent, current
                    f[3] = 8;
                    BinaryPrimitives.WriteUInt16BigEndian(f[4..], ProfileDvdRom);
                    f[6] = (byte)(profile == ProfileDvdRom ? 1 : 0);
                    BinaryPrimitives.WriteUInt16BigEndian(f[8..], ProfileCdRom);
                    f[10] = (byte)(profile == ProfileCdRom ? 1 : 0);
                    length += 12;
                    break;
                case 0x01:          // core: physical interface ATAPI (2), DBE
                    f[2] = (2 << 2) | 0x03;
                    f[3] = 8;
                    BinaryPrimitives.WriteUInt32BigEndian(f[4..], 2);
                    f[8] = 0x01;
                    length += 12;
                    break;
                case 0x02:          // morphing: no asynchronous GESN, no operational change events
                    f[2] = (1 << 2) | 0x03;
                    f[3] = 4;
                    length += 8;
                    break;
                case 0x03:          // removable medium: tray, eject, lock (the feature has no lock-state bit)
                    f[2] = 0x03;
                    f[3] = 4;
                    f[4] = RemovableMechanism;
                    length += 8;
                    break;
                case 0x10:          // random readable: 2048-byte blocks, 1 per ECC block on a CD, 16 on a DVD
                    f[2] = (byte)(current ? 0x01 : 0x00);
                    f[3] = 8;
                    BinaryPrimitives.WriteUInt32BigEndian(f[4..], SectorSize);
                    BinaryPrimitives.WriteUInt16BigEndian(f[8..], (ushort)(profile == ProfileDvdRom ? 16 : 1));
                    length += 12;
                    break;
            }
        }
        BinaryPrimitives.WriteUInt32BigEndian(r, (uint)(length - 4));
        return Reply(length, allocation, data);
    }

    /// <summary>Loading mechanism 001b (tray), eject supported, lock supported.</summary>
    private const byte RemovableMechanism = 0x29;

    /// <summary>Byte 6 of the capabilities page: the mechanism bits and, in bit 1, the lock state.</summary>
    private byte RemovableMediumBits => (byte)(RemovableMechanism | (_locked ? 0x02 : 0));

    private AtaCompletion GetEventStatus(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        if ((cdb[1] & 0x01) == 0) return Check(SenseCode.InvalidFieldInCdb);   // only polled operation
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        var r = _response.AsSpan();
        r[..8].Clear();
        r[3] = 0x10;                // supported classes: media
        if ((cdb[4] & 0x10) == 0)
        {
            r[1] = 2;
            r[2] = 0x80;            // NEA: none of the requested classes is supported
            return Reply(4, allocation, data);
        }
        r[1] = 6;
        r[2] = 0x04;                // media class
        r[4] = _mediaEvent;
        r[5] = (byte)(_medium is null ? 0 : 0x02);      // media present; the (virtual) tray is never reported open
        var done = Reply(8, allocation, data);
        if (!done.IsError && done.TransferredBytes > 4) _mediaEvent = EventNone;     // an event is reported once: when the guest got it
        return done;
    }

    private AtaCompletion ReadDiscInformation(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        if ((cdb[1] & 0x07) != 0) return Check(SenseCode.InvalidFieldInCdb);   // only standard disc information
        if (_medium is null) return Check(SenseCode.MediumNotPresent);
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        var r = _response.AsSpan();
        r[..34].Clear();
        r[1] = 32;
        r[2] = 0x0E;                // last session complete, disc finalized
        r[3] = 1;                   // first track
        r[4] = 1;                   // sessions
        r[5] = 1; r[6] = 1;         // first and last track of the last session
        r[7] = 0x20;                // unrestricted use
        BinaryPrimitives.WriteUInt32BigEndian(r[16..], 0xFFFFFFFF);    // no further session can be written
        BinaryPrimitives.WriteUInt32BigEndian(r[20..], 0xFFFFFFFF);
        return Reply(34, allocation, data);
    }

    private AtaCompletion MechanismStatus(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[8..]);
        _response.AsSpan(0, 8).Clear();       // no fault, no changer, idle, door closed, no slot tables
        return Reply(8, allocation, data);
    }

    private AtaCompletion ModeSense(ReadOnlySpan<byte> cdb, ReadOnlySpan<IoBuffer> data)
    {
        int control = cdb[2] >> 6, page = cdb[2] & 0x3F;
        int allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        if (control == 3) return Check(SenseCode.SavingParametersNotSupported);
        if (cdb[3] != 0 && !(page == 0x3F && cdb[3] == 0xFF)) return Check(SenseCode.InvalidFieldInCdb);   // no subpages
        if (page is not (0x01 or 0x2A or 0x3F)) return Check(SenseCode.InvalidFieldInCdb);
        bool changeable = control == 1;     // nothing can be changed: those pages come back zeroed
        var r = _response.AsSpan();
        r[..64].Clear();
        r[2] = (byte)(_medium is null ? 0x70 : 0x01);   // medium type: door closed no disc / 120 mm data CD
        int length = 8;                     // no block descriptors
        if (page is 0x01 or 0x3F)
        {
            r[length] = 0x01; r[length + 1] = 0x0A;         // read error recovery
            if (!changeable) r[length + 3] = 5;             // read retry count
            length += 12;
        }
        if (page is 0x2A or 0x3F)
        {
            var p = r[length..];
            p[0] = 0x2A; p[1] = 0x14;                       // capabilities and mechanical status
            if (!changeable)
            {
                p[2] = 0x0B;                // reads CD-R, CD-RW, DVD-ROM
                p[6] = RemovableMediumBits;
                BinaryPrimitives.WriteUInt16BigEndian(p[8..], 7056);     // maximum read speed, kB/s (40x)
                BinaryPrimitives.WriteUInt16BigEndian(p[12..], 512);     // buffer size, KiB
                BinaryPrimitives.WriteUInt16BigEndian(p[14..], 7056);    // current read speed
            }
            length += 22;
        }
        BinaryPrimitives.WriteUInt16BigEndian(r, (ushort)(length - 2));
        return Reply(length, allocation, data);
    }
}
