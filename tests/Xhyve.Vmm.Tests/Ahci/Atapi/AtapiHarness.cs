using System.Runtime.InteropServices;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Storage;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Ahci.Atapi;

/// <summary>
/// A PRDT as the port hands it over: entries of the given lengths laid back to back in native memory, followed by
/// a guard area. Every byte starts as <see cref="Fill"/>, so a test sees exactly which bytes a command wrote.
/// </summary>
internal sealed unsafe class GuestBuffers : IDisposable
{
    public const byte Fill = 0xEE;
    private const int Guard = 4096;
    private readonly byte* _block;
    private readonly int _total;
    public IoBuffer[] List { get; }

    public GuestBuffers(params int[] lengths)
    {
        _total = lengths.Sum();
        _block = (byte*)NativeMemory.Alloc((nuint)(_total + Guard));
        new Span<byte>(_block, _total + Guard).Fill(Fill);
        nint at = (nint)_block;
        List = lengths.Select(l => { var b = new IoBuffer(at, l); at += l; return b; }).ToArray();
    }

    /// <summary>The list's bytes and the guard after them.</summary>
    public Span<byte> All => new(_block, _total + Guard);
    public Span<byte> Bytes => new(_block, _total);

    /// <summary>How many bytes (list and guard) no longer hold the fill.</summary>
    public int Written() { int last = -1; var a = All; for (int i = 0; i < a.Length; i++) if (a[i] != Fill) last = i; return last + 1; }

    public void Dispose() => NativeMemory.Free(_block);
}

/// <summary>A medium that records its disposal (the drive owns and disposes what it is given).</summary>
internal sealed class TrackedMedium(long size, string path = "/media/x.iso") : IBlockBackend
{
    public readonly FakeBlockBackend Inner = new(size, readOnly: true);
    public int Disposals;
    public string Path => path;
    public long Size => Inner.Size;
    public int LogicalSectorSize => 512;
    public bool ReadOnly => true;
    public void Read(long offset, Span<byte> buffer) => Inner.Read(offset, buffer);
    public void Write(long offset, ReadOnlySpan<byte> data) => Inner.Write(offset, data);
    /// <summary>Spins this long inside each read, so a disposal racing with a read shows up.</summary>
    public int ReadSpin;

    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        // A read on a closed medium, or one that is closed under it, would be a drive bug (a real file would fail or read a reused fd).
        if (Volatile.Read(ref Disposals) != 0) throw new ObjectDisposedException(path);
        Inner.ReadVectored(offset, buffers);
        if (ReadSpin > 0) Thread.SpinWait(ReadSpin);
        if (Volatile.Read(ref Disposals) != 0) throw new ObjectDisposedException(path);
    }
    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers) => Inner.WriteVectored(offset, buffers);
    public void Flush() { }
    public void WriteZeroes(long offset, long length) { }
    public void Discard(long offset, long length) { }
    public void Dispose() => Interlocked.Increment(ref Disposals);
}

internal static class Atapi
{
    public static readonly AtaCommand PacketCommand = new(0xA0, 0x01, 0, 0, 0, 0);   // PACKET, DMA

    /// <summary>Runs a CDB (padded to the 16-byte ATAPI command area) through PACKET.</summary>
    public static AtaCompletion Run(AtapiCdrom drive, GuestBuffers buffers, params byte[] cdb)
    {
        var packet = new byte[16];
        cdb.CopyTo(packet, 0);
        return drive.Execute(PacketCommand, packet, buffers.List);
    }

    public static AtaCompletion Run(AtapiCdrom drive, params byte[] cdb)
    {
        using var none = new GuestBuffers();
        return Run(drive, none, cdb);
    }

    /// <summary>REQUEST SENSE's key, ASC and ASCQ (which also clears the sense).</summary>
    public static SenseCode Sense(AtapiCdrom drive)
    {
        using var b = new GuestBuffers(18);
        var c = Run(drive, b, 0x03, 0, 0, 0, 18, 0);
        Assert.False(c.IsError);
        Assert.Equal(18, c.TransferredBytes);
        return new SenseCode((byte)(b.Bytes[2] & 0x0F), b.Bytes[12], b.Bytes[13]);
    }

    /// <summary>Clears the power-on unit attention, as a guest's first TEST UNIT READY does.</summary>
    public static AtapiCdrom Ready(AtapiCdrom drive)
    {
        Run(drive, 0x00);
        return drive;
    }

    /// <summary>Asserts a CHECK CONDITION with this sense, and that REQUEST SENSE reports it.</summary>
    public static void AssertCheck(AtapiCdrom drive, AtaCompletion c, SenseCode expected)
    {
        Assert.True(c.IsError, $"expected CHECK CONDITION {expected}, got status {c.Status:X2}");
        Assert.Equal((byte)((expected.Key << 4) | (expected.Key == SenseCode.KeyIllegalRequest ? 0x04 : 0)), c.Error);
        Assert.Equal(0x03, c.Count);        // I/O and C/D: the command ended
        Assert.Equal(0, c.TransferredBytes);
        Assert.Equal(expected, Sense(drive));
    }

    public static void AssertGood(AtaCompletion c, int bytes)
    {
        Assert.False(c.IsError, $"status {c.Status:X2} error {c.Error:X2}");
        Assert.Equal(0x03, c.Count);
        Assert.Equal(bytes, c.TransferredBytes);
    }
}
