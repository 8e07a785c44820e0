using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Storage;

namespace Xhyve.Fuzz;

/// <summary>Reads the fuzz input front to back; past its end every value is zero, so any input is usable.</summary>
internal ref struct InputReader(ReadOnlySpan<byte> data)
{
    private ReadOnlySpan<byte> _rest = data;

    public readonly int Remaining => _rest.Length;
    public readonly ReadOnlySpan<byte> Rest => _rest;

    public byte U8()
    {
        if (_rest.IsEmpty) return 0;
        byte v = _rest[0];
        _rest = _rest[1..];
        return v;
    }

    public ushort U16() => (ushort)(U8() | U8() << 8);
    public uint U32() => U16() | (uint)U16() << 16;
    public ulong U64() => U32() | (ulong)U32() << 32;

    public ReadOnlySpan<byte> Take(int count)
    {
        var taken = _rest[..Math.Min(count, _rest.Length)];
        _rest = _rest[taken.Length..];
        return taken;
    }
}

/// <summary>Guest RAM for the device targets: one region at guest address 0 over a pinned array (devices keep
/// host pointers into guest RAM for vectored I/O, so it must never move).</summary>
internal sealed class PinnedGuestMemory : IGuestMemory
{
    private readonly byte[] _ram;
    private readonly MemoryRegion[] _regions;

    public PinnedGuestMemory(int size, ReadOnlySpan<byte> contents)
    {
        _ram = GC.AllocateArray<byte>(size, pinned: true);
        contents[..Math.Min(contents.Length, size)].CopyTo(_ram);
        _regions = [new MemoryRegion(new GuestAddress(0), (ulong)size)];
    }

    public ulong Size => (ulong)_ram.Length;
    public IReadOnlyList<MemoryRegion> Regions => _regions;

    public bool TryGetSpan(GuestAddress address, int length, out Span<byte> span)
    {
        if (length >= 0 && _regions[0].Contains(address.Value, (ulong)length))
        {
            span = _ram.AsSpan((int)address.Value, length);
            return true;
        }
        span = default;
        return false;
    }

    public bool TryRead(GuestAddress address, Span<byte> destination)
    {
        if (!TryGetSpan(address, destination.Length, out var s)) return false;
        s.CopyTo(destination);
        return true;
    }

    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source)
    {
        if (!TryGetSpan(address, source.Length, out var d)) return false;
        source.CopyTo(d);
        return true;
    }
}

/// <summary>A disk in memory. Out-of-range requests, writes to a read-only disk and any use after Dispose throw
/// (FuzzBugException), so a device that forwards one unchecked is caught by the target; since some drives turn
/// every backend exception into a media error for the guest, the first such broken promise is also kept in
/// <see cref="Violation"/> for the target to check. Contents: <paramref name="fill"/>(offset) for each byte.</summary>
internal sealed class MemoryBackend : IBlockBackend
{
    private readonly byte[] _disk;
    private readonly int _sectorSize;
    private readonly bool _readOnly;
    private volatile bool _disposed;
    private string? _violation;

    public MemoryBackend(long size, int sectorSize, bool readOnly, Func<long, byte>? fill = null)
    {
        _disk = new byte[size];
        _sectorSize = sectorSize;
        _readOnly = readOnly;
        if (fill != null) for (int i = 0; i < _disk.Length; i++) _disk[i] = fill(i);
    }

    public string Path => "fuzz.img";
    public long Size => _disk.Length;
    public int LogicalSectorSize => _sectorSize;
    public bool ReadOnly => _readOnly;
    /// <summary>The first request the device should never have made, or null.</summary>
    public string? Violation => Volatile.Read(ref _violation);

    private FuzzBugException Fail(string message)
    {
        Interlocked.CompareExchange(ref _violation, message, null);
        return new FuzzBugException(message);
    }

    private Span<byte> Range(long offset, long length)
    {
        if (_disposed) throw Fail($"backend used after Dispose ({offset}+{length})");
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw Fail($"backend asked for {offset}+{length} outside the {Size}-byte disk");
        return _disk.AsSpan((int)offset, (int)length);
    }

    private void Writable()
    {
        if (_readOnly) throw Fail("backend written although it is read-only");
    }

    public void Read(long offset, Span<byte> buffer) => Range(offset, buffer.Length).CopyTo(buffer);
    public void Write(long offset, ReadOnlySpan<byte> data) { Writable(); data.CopyTo(Range(offset, data.Length)); }

    public void ReadVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        foreach (var b in buffers) { Read(offset, b.AsSpan()); offset += (long)b.Length; }
    }

    public void WriteVectored(long offset, ReadOnlySpan<IoBuffer> buffers)
    {
        foreach (var b in buffers) { Write(offset, b.AsSpan()); offset += (long)b.Length; }
    }

    public void Flush()
    {
        if (_disposed) throw Fail("backend flushed after Dispose");
    }

    public void WriteZeroes(long offset, long length) { Writable(); Range(offset, length).Clear(); }
    public void Discard(long offset, long length) { Writable(); Range(offset, length); }
    public void Dispose() => _disposed = true;
}

/// <summary>
/// Exceptions thrown while code of one namespace is on the stack, on any thread, even those caught right away.
/// For devices whose contract is "a bad command ends in an error status, never an exception", an exception they
/// catch themselves (a drive that turns every fault into a media error) is still the bug the fuzzer looks for.
/// </summary>
internal static class ThrownWatch
{
    private static string? _namespace;
    private static string? _first;
    private static int _subscribed;
    [ThreadStatic] private static bool _inHandler;

    /// <summary>Starts recording exceptions thrown with a method of <paramref name="ns"/> (or a namespace under it) on the stack.</summary>
    public static void Start(string ns)
    {
        if (Interlocked.Exchange(ref _subscribed, 1) == 0) AppDomain.CurrentDomain.FirstChanceException += OnFirstChance;
        Volatile.Write(ref _first, null);
        Volatile.Write(ref _namespace, ns);
    }

    /// <summary>Stops recording; the first exception seen (type, message and the stack where it was thrown), or null.</summary>
    public static string? Stop()
    {
        Volatile.Write(ref _namespace, null);
        return Interlocked.Exchange(ref _first, null);
    }

    private static void OnFirstChance(object? sender, System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs e)
    {
        string? ns = Volatile.Read(ref _namespace);
        if (ns == null || _inHandler || Volatile.Read(ref _first) != null) return;
        _inHandler = true;   // the handler's own work must not recurse into it
        try
        {
            // The handler runs on the throwing thread before any frame unwinds: the whole stack is still there.
            var stack = new System.Diagnostics.StackTrace(1, true);
            foreach (var frame in stack.GetFrames())
            {
                if (frame.GetMethod()?.DeclaringType?.Namespace is { } n && (n == ns || n.StartsWith(ns + ".", StringComparison.Ordinal)))
                {
                    Interlocked.CompareExchange(ref _first, $"{e.Exception.GetType().FullName}: {e.Exception.Message}\n{stack}", null);
                    break;
                }
            }
        }
        finally { _inHandler = false; }
    }
}

/// <summary>A harness-detected broken promise (not an exception the product throws): always a crash.</summary>
internal sealed class FuzzBugException(string message) : Exception(message);

internal sealed class NullInterruptLine : IInterruptLine
{
    public void Set(bool level) { }
}

internal sealed class NullMsiSink : IMsiSink
{
    public void Signal(int vector, ulong address, uint data) { }
}

internal sealed class NoDoorbells : IDoorbells
{
    public bool TryAttach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => false;
    public void Detach(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) { }
}

/// <summary>Temporary files for the file-based targets, on tmpfs when there is one (fast, and no disk wear).</summary>
internal static class Scratch
{
    public static readonly string Folder = CreateFolder();

    private static string CreateFolder()
    {
        string root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        // afl-fuzz ends target processes with SIGKILL, so no exit handler runs: remove the folders of dead ones.
        foreach (var stale in Directory.EnumerateDirectories(root, "xhyve-fuzz-*"))
            if (int.TryParse(Path.GetFileName(stale)["xhyve-fuzz-".Length..], out int pid) && !Directory.Exists($"/proc/{pid}"))
                try { Directory.Delete(stale, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        string folder = Path.Combine(root, $"xhyve-fuzz-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(folder, true); } catch (IOException) { } };
        return folder;
    }

    public static string File(string name, ReadOnlySpan<byte> contents)
    {
        string path = Path.Combine(Folder, name);
        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write)) f.Write(contents);
        return path;
    }

    public static void Clear()
    {
        foreach (var f in Directory.EnumerateFiles(Folder)) System.IO.File.Delete(f);
    }
}
