using System.Runtime.InteropServices;

namespace Xhyve.PowerShell;

/// <summary>
/// What Connect-XhyveVM does with what the user types: the terminal's bytes go down the serial line as they are,
/// until Ctrl-] (byte 0x1D, as telnet's escape) detaches. Bytes, not .NET keys: Console.KeyAvailable/ReadKey decode
/// and buffer input on their own (a Ctrl-] could sit in .NET's buffer while KeyAvailable said false, so it took
/// several presses to detach), and keys would have to be turned back into the bytes the terminal sent anyway.
/// </summary>
internal static class ConsoleKeys
{
    /// <summary>Ctrl-]: detaches from the console.</summary>
    public const byte Detach = 0x1d;

    /// <summary>How many bytes of <paramref name="input"/> go to the guest: all of them, or those before a Ctrl-]
    /// (then <paramref name="detach"/> is true and the rest is dropped, as the user is leaving).</summary>
    public static int ForwardLength(ReadOnlySpan<byte> input, out bool detach)
    {
        int at = input.IndexOf(Detach);
        detach = at >= 0;
        return detach ? at : input.Length;
    }

    /// <summary>
    /// Passes input to <paramref name="send"/> until a Ctrl-] (true), the end of the input (false), or
    /// <paramref name="keepGoing"/> turning false (false). <paramref name="read"/> returns the bytes read into the buffer,
    /// 0 at the end of the input, or -1 when nothing came in a while (so that keepGoing is asked again).
    /// </summary>
    public static bool Pump(Func<byte[], int> read, Action<byte[], int> send, Func<bool> keepGoing)
    {
        var buffer = new byte[1024];
        while (keepGoing())
        {
            int n = read(buffer);
            if (n < 0) continue;
            if (n == 0) return false;
            int forward = ForwardLength(buffer.AsSpan(0, n), out bool detach);
            if (forward > 0) send(buffer, forward);
            if (detach) return true;
        }
        return false;
    }
}

/// <summary>
/// The terminal on a file descriptor in raw mode (cfmakeraw: no line editing, no echo, no signals from Ctrl-C/Ctrl-Z/Ctrl-\,
/// every byte as typed), with output post-processing kept so that the cmdlet's own lines still end properly.
/// The settings it found are put back on Dispose.
/// </summary>
internal sealed class RawTerminal : IDisposable
{
    private const int TCSANOW = 0, OPOST = 1, POLLIN = 1, EINTR = 4;
    private readonly int _fd;
    private readonly byte[] _saved;
    private bool _disposed;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events, Revents; }

    // struct termios is 60 bytes in glibc (x86-64 and arm64): handled as bytes, with c_oflag at offset 4.
    private const int TermiosSize = 64;

    [DllImport("libc", SetLastError = true)] private static extern int isatty(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int tcgetattr(int fd, byte[] termios);
    [DllImport("libc", SetLastError = true)] private static extern int tcsetattr(int fd, int actions, byte[] termios);
    [DllImport("libc")] private static extern void cfmakeraw(byte[] termios);
    [DllImport("libc", SetLastError = true)] private static extern int poll(ref PollFd fds, nuint count, int timeoutMs);
    [DllImport("libc", SetLastError = true)] private static extern nint read(int fd, byte[] buffer, nuint count);

    private RawTerminal(int fd, byte[] saved) => (_fd, _saved) = (fd, saved);

    /// <summary>Whether <paramref name="fd"/> is a terminal (not a pipe, a file or /dev/null).</summary>
    public static bool IsTerminal(int fd) => isatty(fd) == 1;

    /// <summary>Puts the terminal on <paramref name="fd"/> into raw mode; null when it is not a terminal.</summary>
    public static RawTerminal? Open(int fd)
    {
        var saved = new byte[TermiosSize];
        if (isatty(fd) != 1 || tcgetattr(fd, saved) != 0) return null;
        var raw = (byte[])saved.Clone();
        cfmakeraw(raw);
        BitConverter.TryWriteBytes(raw.AsSpan(4, 4), BitConverter.ToUInt32(raw, 4) | OPOST);
        if (tcsetattr(fd, TCSANOW, raw) != 0) return null;
        return new RawTerminal(fd, saved);
    }

    /// <summary>Reads what was typed: the byte count, 0 at end of input, -1 when nothing came within <paramref name="timeoutMs"/>.</summary>
    public int Read(byte[] buffer, int timeoutMs)
    {
        var p = new PollFd { Fd = _fd, Events = POLLIN };
        int ready = poll(ref p, 1, timeoutMs);
        if (ready == 0 || (ready < 0 && Marshal.GetLastPInvokeError() == EINTR)) return -1;
        if (ready < 0) return 0;
        nint n = read(_fd, buffer, (nuint)buffer.Length);
        if (n < 0) return Marshal.GetLastPInvokeError() == EINTR ? -1 : 0;
        return (int)n;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        tcsetattr(_fd, TCSANOW, _saved);
    }
}
