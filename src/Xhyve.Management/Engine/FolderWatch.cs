using System.Runtime.InteropServices;

namespace Xhyve.Management.Engine;

/// <summary>
/// Wakes a waiter when an entry is created in, or renamed into, a folder (inotify IN_CREATE | IN_MOVED_TO): how a start
/// learns that the engine bound its control socket or wrote its exit file (which it renames into place) without
/// polling the folder. Opened before the engine is launched, so nothing it creates is missed. Where inotify is not
/// to be had (the per-user instance limit reached), <see cref="Wait"/> falls back to a short sleep.
/// The inotify instances are kept for the next watch rather than closed (only the folder's watch is removed): closing an
/// instance waits for an RCU grace period in the kernel (synchronize_srcu, measured 8-16 ms on our hosts), which every
/// start and every Wait-XhyveVM paid in wall time. A kept instance is used by one watch at a time.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed partial class FolderWatch : IDisposable
{
    private const int IN_NONBLOCK = 0x800, IN_CLOEXEC = 0x80000;
    private const uint IN_CREATE = 0x100, IN_MOVED_TO = 0x80;
    private const short POLLIN = 1;
    /// <summary>The fallback's sleep: short against a start of tens of milliseconds, rare (only without inotify).</summary>
    private static readonly TimeSpan FallbackSleep = TimeSpan.FromMilliseconds(5);
    /// <summary>How many idle instances are kept: enough for a few watches at once (parallel starts), few against the
    /// per-user limit on instances (fs.inotify.max_user_instances, 128 by default).</summary>
    internal const int MaxIdle = 4;
    private static readonly Stack<int> Idle = new();

    private int _fd;
    private readonly int _wd;

    private FolderWatch(int fd, int wd) => (_fd, _wd) = (fd, wd);

    public static FolderWatch Open(string folder)
    {
        int fd = TakeIdle();
        if (fd < 0) fd = InotifyInit1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) return new FolderWatch(-1, -1);
        int wd = InotifyAddWatch(fd, folder, IN_CREATE | IN_MOVED_TO);
        if (wd >= 0) return new FolderWatch(fd, wd);
        Close(fd);
        return new FolderWatch(-1, -1);
    }

    /// <summary>How many instances are kept idle now (for tests).</summary>
    internal static int IdleCount { get { lock (Idle) return Idle.Count; } }

    private static int TakeIdle()
    {
        lock (Idle) return Idle.Count > 0 ? Idle.Pop() : -1;
    }

    /// <summary>Returns once something was created in or renamed into the folder since the last call (or at once if it
    /// was meanwhile), or after <paramref name="timeout"/>. The caller then looks at the files it waits for.</summary>
    public unsafe void Wait(TimeSpan timeout)
    {
        if (_fd < 0)
        {
            // Never negative: Thread.Sleep takes -1 ms as "forever".
            Thread.Sleep(timeout < TimeSpan.Zero ? TimeSpan.Zero : timeout < FallbackSleep ? timeout : FallbackSleep);
            return;
        }
        var poll = new PollFd { Fd = _fd, Events = POLLIN };
        int ms = (int)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 0, int.MaxValue);
        if (PollOne(&poll, 1, ms) <= 0) return;   // timeout, or EINTR: the caller looks again either way
        Drain(_fd);   // which file it was does not matter, the caller checks them all
    }

    private static unsafe void Drain(int fd)
    {
        byte* buffer = stackalloc byte[4096];
        while (Read(fd, buffer, 4096) > 0) { }
    }

    /// <summary>Removes the folder's watch and keeps the instance for the next watch (or closes it, with
    /// <see cref="MaxIdle"/> kept already). Its queue is drained after the removal: once inotify_rm_watch returns, the
    /// watch queues nothing more (its last event, IN_IGNORED, is queued by the removal itself), so the next watch is
    /// woken only by its own folder.</summary>
    public void Dispose()
    {
        int fd = _fd;
        _fd = -1;
        if (fd < 0) return;
        // Fails only for a watch the kernel removed already (its folder is gone): the instance is as good either way.
        _ = InotifyRmWatch(fd, _wd);
        Drain(fd);
        lock (Idle)
        {
            if (Idle.Count < MaxIdle) { Idle.Push(fd); return; }
        }
        Close(fd);
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

    [LibraryImport("libc", EntryPoint = "inotify_rm_watch", SetLastError = true)]
    private static partial int InotifyRmWatch(int fd, int wd);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int PollOne(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
