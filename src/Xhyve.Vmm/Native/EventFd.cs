namespace Xhyve.Vmm.Native;

/// <summary>A Linux eventfd: a counter one side increments (a vCPU, or KVM itself through ioeventfd) and a
/// worker thread waits on with poll.</summary>
public sealed unsafe class EventFd : IDisposable
{
    public int Fd { get; }

    public EventFd()
    {
        Fd = LibC.EventFd(0, LibC.EFD_CLOEXEC | LibC.EFD_NONBLOCK);
        if (Fd < 0) throw new IOException($"eventfd failed: {LibC.StrError(LibC.LastErrno)}");
    }

    public void Signal()
    {
        ulong one = 1;
        LibC.Write(Fd, (byte*)&one, 8);   // only fails when the counter would overflow: already signalled
    }

    /// <summary>Resets the counter; whether it had been signalled.</summary>
    public bool Drain()
    {
        ulong value;
        return LibC.Read(Fd, (byte*)&value, 8) == 8;
    }

    public void Dispose() => LibC.Close(Fd);
}
