using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Ahci;

/// <summary>The registers of a Register Host-to-Device FIS (SATA 3.x §10.5.5), as the port decoded them from a
/// command table: what a drive is asked to do. 48-bit fields are whole; a 28-bit command uses their low bits.</summary>
/// <param name="Command">The ATA command code.</param>
/// <param name="Features">FEATURES (15:0). For FPDMA QUEUED commands it holds the sector count.</param>
/// <param name="Lba">LBA (47:0).</param>
/// <param name="Count">COUNT (15:0). For FPDMA QUEUED commands bits 7:3 hold the NCQ tag.</param>
/// <param name="Device">DEVICE (bit 6: LBA mode; bit 7 of FPDMA: FUA).</param>
/// <param name="Control">CONTROL.</param>
public readonly record struct AtaCommand(byte Command, ushort Features, ulong Lba, ushort Count, byte Device, byte Control);

/// <summary>The registers a drive reports when a command ends (they go into the Register Device-to-Host FIS,
/// or for a queued command into the Set Device Bits FIS), and the bytes it moved (PxCMD's PRDBC).</summary>
public readonly record struct AtaCompletion(byte Status, byte Error, ulong Lba, ushort Count, byte Device, int TransferredBytes)
{
    public const byte StatusError = 0x01, StatusDataRequest = 0x08, StatusDeviceFault = 0x20, StatusReady = 0x40, StatusBusy = 0x80;
    public const byte ErrorAbort = 0x04, ErrorIdNotFound = 0x10, ErrorUncorrectable = 0x40, ErrorInterfaceCrc = 0x80;

    /// <summary>Success: DRDY, no error, <paramref name="bytes"/> moved.</summary>
    public static AtaCompletion Ok(int bytes = 0) => new(StatusReady, 0, 0, 0, 0, bytes);

    /// <summary>The command is refused (an unknown command, a bad argument): ERR with ABRT.</summary>
    public static AtaCompletion Abort(byte extraError = 0) => new(StatusReady | StatusError, (byte)(ErrorAbort | extraError), 0, 0, 0, 0);

    /// <summary>ERR with the given error register (IDNF for an LBA out of range, UNC for a media error).</summary>
    public static AtaCompletion Failed(byte error) => new(StatusReady | StatusError, error, 0, 0, 0, 0);

    public bool IsError => (Status & StatusError) != 0;
}

/// <summary>
/// A device behind one AHCI port: an ATA disk (ahci-hd) or an ATAPI CD/DVD drive (ahci-cd). The port owns the
/// SATA side (FISes, the command list, the PRDT, interrupts, NCQ tags); the drive owns the command set. A drive
/// is called from the I/O worker threads, several commands at once for NCQ, and must be safe for that.
/// Whatever the guest put in the command (codes, LBAs, counts, the packet) is untrusted: a bad command ends in
/// an error completion, never an exception.
/// </summary>
public interface IAhciDrive : IDisposable
{
    /// <summary>For messages and counters: "ahci-hd 0:4:0 port 0".</summary>
    string Name { get; }

    /// <summary>What PxSIG reads after the drive's reset: 0x00000101 for an ATA device, 0xEB140101 for ATAPI.</summary>
    uint Signature { get; }

    /// <summary>True for an ATAPI device (its commands come as PACKET with a CDB).</summary>
    bool IsAtapi { get; }

    /// <summary>Runs one command. <paramref name="packet"/> is the command table's 16-byte ATAPI command area
    /// (empty for ATA commands). <paramref name="data"/> is the command's PRDT, each entry already checked to lie in
    /// guest RAM; its total may be larger than the command moves (never read or write past what the command moves),
    /// or smaller (then the command fails: an ATA error, or for ATAPI a CHECK CONDITION).</summary>
    AtaCompletion Execute(in AtaCommand command, ReadOnlySpan<byte> packet, ReadOnlySpan<IoBuffer> data);

    /// <summary>A COMRESET or a DEVICE RESET: back to the power-on state (pending unit attentions excepted).</summary>
    void Reset();
}

/// <summary>Copies between contiguous bytes and a scatter list (a PRDT mapped onto guest RAM).</summary>
public static class ScatterList
{
    /// <summary>Total bytes of the list.</summary>
    public static long Length(ReadOnlySpan<IoBuffer> list)
    {
        long total = 0;
        foreach (var b in list) total += (long)b.Length;
        return total;
    }

    /// <summary>Copies as much of <paramref name="source"/> as fits into the list; returns the bytes copied.</summary>
    public static int CopyTo(ReadOnlySpan<byte> source, ReadOnlySpan<IoBuffer> list)
    {
        int copied = 0;
        foreach (var b in list)
        {
            if (copied == source.Length) break;
            int n = Math.Min((int)b.Length, source.Length - copied);
            source.Slice(copied, n).CopyTo(b.AsSpan()[..n]);
            copied += n;
        }
        return copied;
    }

    /// <summary>Copies the first bytes of the list into <paramref name="destination"/>; returns the bytes copied.</summary>
    public static int CopyFrom(ReadOnlySpan<IoBuffer> list, Span<byte> destination)
    {
        int copied = 0;
        foreach (var b in list)
        {
            if (copied == destination.Length) break;
            int n = Math.Min((int)b.Length, destination.Length - copied);
            b.AsSpan()[..n].CopyTo(destination.Slice(copied, n));
            copied += n;
        }
        return copied;
    }

    /// <summary>The first <paramref name="bytes"/> of the list, written into <paramref name="scratch"/> (the last entry
    /// shortened); returns the entries used, or -1 when the list holds fewer bytes.</summary>
    public static int Prefix(ReadOnlySpan<IoBuffer> list, long bytes, Span<IoBuffer> scratch)
    {
        int used = 0;
        long left = bytes;
        foreach (var b in list)
        {
            if (left == 0) break;
            if (used == scratch.Length) return -1;
            long n = Math.Min((long)b.Length, left);
            scratch[used++] = new IoBuffer(b.Address, (int)n);
            left -= n;
        }
        return left == 0 ? used : -1;
    }
}
