using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Serial;

/// <summary>
/// Puts a terminal into raw mode and restores it exactly once, whichever exit path runs first
/// (normal return, exception, signal, process exit).
/// </summary>
public static class TerminalGuard
{
    private static readonly Lock s_lock = new();
    private static readonly List<(int Fd, Termios Saved)> s_saved = new();
    private static bool s_hooked;

    /// <summary>Makes <paramref name="fd"/> raw if it is a terminal; returns false if it is not one.</summary>
    public static bool MakeRaw(int fd)
    {
        if (LibC.IsATty(fd) == 0) return false;
        if (LibC.TcGetAttr(fd, out var saved) != 0) return false;
        lock (s_lock)
        {
            if (!s_saved.Exists(s => s.Fd == fd)) s_saved.Add((fd, saved));
            if (!s_hooked)
            {
                AppDomain.CurrentDomain.ProcessExit += (_, _) => RestoreAll();
                s_hooked = true;
            }
        }
        var raw = saved;
        LibC.CfMakeRaw(ref raw);
        LibC.TcSetAttr(fd, LibC.TCSANOW, raw);
        return true;
    }

    public static void RestoreAll()
    {
        lock (s_lock)
        {
            foreach (var (fd, saved) in s_saved) LibC.TcSetAttr(fd, LibC.TCSANOW, saved);
            s_saved.Clear();
        }
    }
}
