using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Native;

/// <summary>What poll(2) says about a connected socket's peer, for a server that must notice a client leave while it
/// is not reading from it (the control API's console waits for the guest before it reads more input).</summary>
public static unsafe class SocketPeer
{
    /// <summary>Whether the peer has closed its end entirely, without reading and without blocking. A peer that only
    /// shut down its sending side (it still reads) is not gone: a Unix stream socket reports that as POLLRDHUP, and
    /// POLLHUP only once both directions are shut (Linux net/unix/af_unix.c, unix_poll).</summary>
    public static bool HasHungUp(SafeHandle socket)
    {
        bool added = false;
        try
        {
            // The reference keeps the descriptor from being closed and reused while poll looks at it.
            socket.DangerousAddRef(ref added);
            var fd = new PollFd { Fd = (int)socket.DangerousGetHandle() };
            // Safe: fd lives on this stack frame for the whole call, and nfds is 1.
            return LibC.Poll(&fd, 1, 0) == 1 && (fd.Revents & (PollFd.PollHup | PollFd.PollErr | PollFd.PollNval)) != 0;
        }
        catch (ObjectDisposedException) { return true; }
        finally { if (added) socket.DangerousRelease(); }
    }
}
