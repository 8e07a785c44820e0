using System.Runtime.InteropServices;

namespace Xhyve.Management.Engine;

/// <summary>
/// Wakes a waiter when an entry is created in, or renamed into, a folder (inotify IN_CREATE | IN_MOVED_TO): how a start
/// learns that the engine bound its control socket or wrote its exit file (which it renames into place) without
/// polling the folder. Opened before the engine is launched, so nothing it creates is missed. Where inotify is not
/// to be had (the per-user instance limit reached), <see cref="Wait"/> falls back to a short sleep.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed partial class FolderWatch : IDisposable
{
    private const int IN_NONBLOCK = 0x800, IN_CLOEXEC = 0x80000;
    private const uint IN_CREATE = 0x100, IN_MOVED_TO = 0x80;
    private const short POLLIN = 1;
    /// <summary>The fallback's sleep: short against a start of tens of milliseconds, rare (only without inotify).</summary>
    private static readonly TimeSpan FallbackSleep = TimeSpan.FromMilliseconds(5);

    private int _fd;

    private FolderWatch(int fd) => _fd = fd;

    public static FolderWatch Open(string folder)
    {
        int fd = InotifyInit1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd >= 0 && InotifyAddWatch(fd, folder, IN_CREATE | IN_MOVED_TO) < 0)
        {
            Close(fd);
            fd = -1;
        }
        return new FolderWatch(fd);
    }

    /// <summary>Returns once something was created in or renamed into the folder since the last call (or at once if it
    /// was meanwhile), or after <paramref name="timeout"/>. The caller then looks at the files it waits for.</summary>
    public unsafe void Wait(TimeSpan timeout)
    {
        if (_fd < 0)
        {
            Thread.Sleep(timeout < FallbackSleep ? timeout : FallbackSleep);
            return;
        }
        var poll = new PollFd { Fd = _fd, Events = POLLIN };
        int ms = (int)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 0, int.MaxValue);
        if (PollOne(&poll, 1, ms) <= 0) return;   // timeout, or EINTR: the caller looks again either way
        // Drain the events: which file it was does not matter, the caller checks them all.
        byte* buffer = stackalloc byte[4096];
        while (Read(_fd, buffer, 4096) > 0) { }
    }

    public void Dispose()
    {
        if (_fd >= 0) Close(_fd);
        _fd = -1;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events, Revents;
    }

    [LibraryImport("libc", EntryPoint = "inotify_init1", SetLastError = true)]
    private static partial int InotifyInit1(int flags);

    [LibraryImport("libc", EntryPoint = "inotify_add_watch", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int InotifyAddWatch(int fd, string path, uint mask);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int PollOne(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
