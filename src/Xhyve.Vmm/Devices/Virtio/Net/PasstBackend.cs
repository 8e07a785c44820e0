using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>
/// User-mode networking through Debian's passt (https://passt.top): the engine starts one passt per adapter,
/// connected through a socketpair (passt --fd), and passt gives the guest DHCP, DNS, NDP/DHCPv6 and NAT to the
/// host's network with no root and no setup. On the stream, each frame is a 32-bit big-endian length and the
/// Ethernet frame (passt's qemu protocol). passt quits when the socket closes (--one-off), so its life follows the
/// engine's even when the engine is killed. Many frames move per read and per write in both directions.
/// </summary>
public sealed unsafe class PasstBackend : INetBackend
{
    /// <summary>Room for several full-size frames per system call.</summary>
    public const int BufferSize = 256 * 1024;
    private readonly string _name;
    private readonly Process? _process;
    private int _fd;
    private readonly StreamFrameReader _reader = new(BufferSize);
    private readonly StreamFrameWriter _writer = new(BufferSize);
    private string? _closeReason;
    private readonly Queue<string> _lastErrors = new();

    private PasstBackend(string name, int fd, Process? process)
    {
        _name = name; _fd = fd; _process = process;
    }

    /// <summary>A backend over an already connected stream socket (tests use the other end as passt).</summary>
    internal static PasstBackend OverSocket(string name, int fd) => new(name, fd, null);

    public string Description => _process != null ? $"passt (pid {_process.Id})" : _name;
    public int Fd => _fd;
    public int VnetHeaderSize => 0;
    public ulong Offloads => 0;
    public void SetOffloads(ulong negotiated) { }
    public bool HasQueuedOutput => _writer.Pending > 0;
    public string? CloseReason => _closeReason;

    /// <summary>The passt program: $XHYVE_PASST, else passt on PATH; null when there is none.</summary>
    public static string? FindPasst()
    {
        if (Environment.GetEnvironmentVariable("XHYVE_PASST") is { Length: > 0 } explicitPath) return File.Exists(explicitPath) ? explicitPath : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "passt");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Starts passt for the adapter <paramref name="name"/> with its port forwards.</summary>
    /// <exception cref="NetBackendException">passt is missing, a forwarded host port is taken, or passt failed to start.</exception>
    public static PasstBackend Start(string name, IReadOnlyList<PortForward> forwards)
    {
        string passt = FindPasst() ?? throw new NetBackendException(
            $"{name}: user networking needs passt, which was not found on PATH (install it: apt-get install passt; or use tap=NAME)");
        foreach (var f in forwards) CheckHostPortFree(name, f);

        int* fds = stackalloc int[2];
        if (LibC.SocketPair(LibC.AF_UNIX, LibC.SOCK_STREAM, 0, fds) != 0)
            throw new NetBackendException($"{name}: socketpair for passt failed: {LibC.StrError(LibC.LastErrno)}");
        int ours = fds[0], theirs = fds[1];
        try
        {
            // The default 208 KiB socket buffers fill at once under load: passt then fails sends (EAGAIN) and splits
            // frames, spending the CPU the guest needs. passt sizes its own sockets to 8 MiB; these get the same
            // (the kernel caps the value at wmem_max/rmem_max, and needs no privilege up to there).
            foreach (int fd in new[] { ours, theirs }) SetBuffers(fd, SocketBufferBytes);
            // Ours stays in this process; theirs is inherited by passt and closed here once it runs.
            LibC.Fcntl(ours, LibC.F_SETFD, LibC.FD_CLOEXEC);
            LibC.Fcntl(ours, LibC.F_SETFL, LibC.Fcntl(ours, LibC.F_GETFL, 0) | LibC.O_NONBLOCK);
            var start = new ProcessStartInfo(passt) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in new[] { "--foreground", "--quiet", "--one-off", "--fd", theirs.ToString(System.Globalization.CultureInfo.InvariantCulture) }) start.ArgumentList.Add(a);
            foreach (var f in forwards)
            {
                start.ArgumentList.Add(f.Protocol == "udp" ? "--udp-ports" : "--tcp-ports");
                start.ArgumentList.Add($"{(f.HostAddress != null ? f.HostAddress + "/" : "")}{f.HostPort}:{f.GuestPort}");
            }
            var process = Process.Start(start) ?? throw new NetBackendException($"{name}: {passt} did not start");
            LibC.Close(theirs);
            theirs = -1;
            var backend = new PasstBackend(name, ours, process);
            process.ErrorDataReceived += (_, e) => backend.PasstSaid(e.Data);
            process.OutputDataReceived += (_, e) => backend.PasstSaid(e.Data);
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            // passt checks its options and sets up before it serves the socket: a refusal comes at once.
            if (process.WaitForExit(100))
            {
                process.WaitForExit();
                string why = backend.LastError ?? $"exit status {process.ExitCode}";
                backend.Dispose();
                throw new NetBackendException($"{name}: passt failed to start: {why}");
            }
            return backend;
        }
        catch (Exception e) when (e is not NetBackendException)
        {
            LibC.Close(ours);
            if (theirs >= 0) LibC.Close(theirs);
            throw new NetBackendException($"{name}: cannot start {passt}: {e.Message}");
        }
    }

    /// <summary>Send and receive buffer of each end of the socketpair.</summary>
    public const int SocketBufferBytes = 8 << 20;

    private static void SetBuffers(int fd, int bytes)
    {
        // Best effort: a smaller buffer is slower, not wrong.
        LibC.SetSockOpt(fd, LibC.SOL_SOCKET, LibC.SO_SNDBUF, &bytes, sizeof(int));
        LibC.SetSockOpt(fd, LibC.SOL_SOCKET, LibC.SO_RCVBUF, &bytes, sizeof(int));
    }

    /// <summary>passt binds forwarded ports itself and carries on quietly when one is taken: say so here instead.</summary>
    private static void CheckHostPortFree(string name, PortForward f)
    {
        var address = f.HostAddress != null ? IPAddress.Parse(f.HostAddress) : IPAddress.Any;
        using var probe = new Socket(address.AddressFamily, f.Protocol == "udp" ? SocketType.Dgram : SocketType.Stream,
            f.Protocol == "udp" ? ProtocolType.Udp : ProtocolType.Tcp);
        try { probe.Bind(new IPEndPoint(address, f.HostPort)); }
        catch (SocketException e)
        {
            throw new NetBackendException($"{name}: hostfwd={f}: host port {f.Protocol}:{f.HostPort} cannot be used ({e.Message})");
        }
    }

    // passt's own noise when run as root in a container: it drops to nobody, and there is no syslog.
    private void PasstSaid(string? line)
    {
        if (string.IsNullOrWhiteSpace(line) || line.StartsWith("Failed to send ", StringComparison.Ordinal) && line.EndsWith(" to syslog", StringComparison.Ordinal)
            || line.StartsWith("Don't run as root", StringComparison.Ordinal)) return;
        lock (_lastErrors)
        {
            _lastErrors.Enqueue(line);
            if (_lastErrors.Count > 4) _lastErrors.Dequeue();
        }
        Console.Error.WriteLine($"xhyve: {_name}: passt: {line}");
    }

    private string? LastError { get { lock (_lastErrors) return _lastErrors.Count > 0 ? string.Join("; ", _lastErrors) : null; } }

    public NetIo Peek(out ReadOnlySpan<byte> packet)
    {
        packet = default;
        if (_fd < 0) return NetIo.Closed;
        while (true)
        {
            switch (_reader.TryTake(out packet))
            {
                case StreamFrameReader.Result.Frame: return NetIo.Ok;
                case StreamFrameReader.Result.BadLength: return Close($"passt sent a frame length of {_reader.BadLength} bytes");
            }
            var room = _reader.FreeSpace;
            if (room.IsEmpty) return Close("passt's stream is out of step (no whole frame in a full buffer)");
            nint n;
            fixed (byte* p = room) n = LibC.Recv(_fd, p, (nuint)room.Length, LibC.MSG_DONTWAIT);
            if (n > 0) { _reader.Appended((int)n); continue; }
            if (n == 0) return Close(ExitDescription("closed its socket"));
            int errno = LibC.LastErrno;
            if (errno == LibC.EINTR) continue;
            if (errno == LibC.EAGAIN) return NetIo.WouldBlock;
            return Close($"reading from passt failed: {LibC.StrError(errno)}");
        }
    }

    public void Consume() => _reader.Consume();

    public NetIo Send(ReadOnlySpan<byte> packet)
    {
        if (_fd < 0) return NetIo.Closed;
        if (_writer.TryAppend(packet)) return NetIo.Ok;
        // Full: push what is queued, then try once more.
        var r = Flush();
        if (r == NetIo.Closed) return r;
        return _writer.TryAppend(packet) ? NetIo.Ok : NetIo.WouldBlock;
    }

    public NetIo Flush()
    {
        while (_writer.Pending > 0)
        {
            if (_fd < 0) return NetIo.Closed;
            var data = _writer.PendingBytes;
            nint n;
            fixed (byte* p = data) n = LibC.Send(_fd, p, (nuint)data.Length, LibC.MSG_DONTWAIT | LibC.MSG_NOSIGNAL);
            if (n > 0) { _writer.Sent((int)n); continue; }
            int errno = LibC.LastErrno;
            if (n < 0 && errno == LibC.EINTR) continue;
            if (n < 0 && errno == LibC.EAGAIN) return NetIo.WouldBlock;
            return Close(errno is LibC.EPIPE or LibC.ECONNRESET ? ExitDescription("closed its socket") : $"writing to passt failed: {LibC.StrError(errno)}");
        }
        return NetIo.Ok;
    }

    private string ExitDescription(string what)
    {
        if (_process == null) return $"the peer {what}";
        string status = _process.WaitForExit(200) ? $"exited with status {_process.ExitCode}" : "is still running";
        return $"passt {what} ({status}{(LastError is { } e ? $"; it said: {e}" : "")})";
    }

    private NetIo Close(string reason)
    {
        _closeReason = reason;
        if (_fd >= 0) LibC.Close(_fd);
        _fd = -1;
        return NetIo.Closed;
    }

    public void Dispose()
    {
        if (_fd >= 0) LibC.Close(_fd);
        _fd = -1;
        if (_process == null) return;
        // The closed socket ends passt (--one-off); a passt that does not go is killed.
        try
        {
            if (!_process.WaitForExit(1000)) { _process.Kill(); _process.WaitForExit(1000); }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}

/// <summary>
/// Frames out of a byte stream of (32-bit big-endian length, frame) records, as passt and QEMU's stream netdev
/// write them. A length of 0 or above <see cref="EthernetFrame.MaximumSize"/> cannot be a frame: the stream is
/// out of step and is given up.
/// </summary>
public sealed class StreamFrameReader(int capacity)
{
    public enum Result { Frame, NeedMore, BadLength }
    private readonly byte[] _buffer = new byte[capacity];
    private int _start, _end, _taken;

    /// <summary>The length that made <see cref="TryTake"/> return BadLength.</summary>
    public uint BadLength { get; private set; }

    /// <summary>Where more stream bytes go (compacts the buffer first when the front is used up).</summary>
    public Span<byte> FreeSpace
    {
        get
        {
            if (_start > 0 && (_end == _buffer.Length || _start == _end))
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start; _start = 0;
            }
            return _buffer.AsSpan(_end);
        }
    }

    public void Appended(int count) => _end += count;

    /// <summary>The next whole frame, left in the buffer until <see cref="Consume"/>.</summary>
    public Result TryTake(out ReadOnlySpan<byte> frame)
    {
        frame = default;
        if (_taken > 0) { frame = _buffer.AsSpan(_start + 4, _taken); return Result.Frame; }
        if (_end - _start < 4) return Result.NeedMore;
        uint length = BinaryPrimitives.ReadUInt32BigEndian(_buffer.AsSpan(_start));
        if (length == 0 || length > EthernetFrame.MaximumSize) { BadLength = length; return Result.BadLength; }
        if (_end - _start < 4 + (int)length) return Result.NeedMore;
        _taken = (int)length;
        frame = _buffer.AsSpan(_start + 4, _taken);
        return Result.Frame;
    }

    public void Consume()
    {
        if (_taken == 0) return;
        _start += 4 + _taken;
        _taken = 0;
        if (_start == _end) _start = _end = 0;
    }
}

/// <summary>Frames into a byte stream of (32-bit big-endian length, frame) records, queued for one write.</summary>
public sealed class StreamFrameWriter(int capacity)
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _start, _end;

    public int Pending => _end - _start;
    public ReadOnlySpan<byte> PendingBytes => _buffer.AsSpan(_start, _end - _start);

    public bool TryAppend(ReadOnlySpan<byte> frame)
    {
        if (_start == _end) _start = _end = 0;
        if (_buffer.Length - _end < 4 + frame.Length)
        {
            if (_start == 0) return false;
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start; _start = 0;
            if (_buffer.Length - _end < 4 + frame.Length) return false;
        }
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(_end), (uint)frame.Length);
        frame.CopyTo(_buffer.AsSpan(_end + 4));
        _end += 4 + frame.Length;
        return true;
    }

    public void Sent(int count)
    {
        _start += count;
        if (_start == _end) _start = _end = 0;
    }
}
