using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Serial;

/// <summary>
/// A terminal held in raw mode for an interactive console client (Connect-XhyveVM): cfmakeraw (no line editing, no
/// echo, no signals from Ctrl-C/Ctrl-Z/Ctrl-\, every byte as typed) with output post-processing kept, so that the
/// client's own lines still end properly. The settings it found are put back on Dispose.
/// </summary>
public sealed class RawTerminal : IDisposable
{
    private const int EINTR = 4;
    private readonly int _fd;
    private readonly Termios _saved;
    private bool _disposed;

    private RawTerminal(int fd, Termios saved) => (_fd, _saved) = (fd, saved);

    /// <summary>Whether <paramref name="fd"/> is a terminal (not a pipe, a file or /dev/null).</summary>
    public static bool IsTerminal(int fd) => LibC.IsATty(fd) == 1;

    /// <summary>Puts the terminal on <paramref name="fd"/> into raw mode; null when it is not a terminal.</summary>
    public static RawTerminal? Open(int fd)
    {
        if (!IsTerminal(fd) || LibC.TcGetAttr(fd, out var saved) != 0) return null;
        var raw = saved;
        LibC.CfMakeRaw(ref raw);
        raw.OFlag |= LibC.OPOST;
        if (LibC.TcSetAttr(fd, LibC.TCSANOW, raw) != 0) return null;
        return new RawTerminal(fd, saved);
    }

    /// <summary>Reads what was typed: the byte count, 0 at the end of the input (or an error), -1 when nothing came
    /// within <paramref name="timeoutMs"/> or a signal interrupted the wait.</summary>
    public unsafe int Read(Span<byte> buffer, int timeoutMs)
    {
        var p = new PollFd { Fd = _fd, Events = PollFd.PollIn };
        int ready = LibC.Poll(&p, 1, timeoutMs);
        if (ready == 0 || (ready < 0 && LibC.LastErrno == EINTR)) return -1;
        if (ready < 0) return 0;
        nint n;
        fixed (byte* b = buffer) n = LibC.Read(_fd, b, (nuint)buffer.Length);
        if (n < 0) return LibC.LastErrno == EINTR ? -1 : 0;
        return (int)n;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        LibC.TcSetAttr(_fd, LibC.TCSANOW, _saved);
    }
}
