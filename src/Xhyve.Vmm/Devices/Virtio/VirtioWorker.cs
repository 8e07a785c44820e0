using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>
/// A device's worker thread: waits on one eventfd per queue (signalled by KVM through ioeventfd, or by the
/// transport when a notification exits to the vCPU thread) and hands each notified queue to the device.
/// An exception from the device is handed to the fault callback, never allowed to end the thread or the engine.
/// </summary>
internal sealed unsafe class VirtioWorker : IDisposable
{
    private readonly EventFd[] _queues;
    private readonly EventFd _stop = new();
    private readonly Action<int> _process;
    private readonly Action<Exception> _fault;
    private readonly Thread _thread;
    private readonly PollFd[] _poll;

    // fault: told about an exception from process; the worker then carries on waiting, so a device the driver
    // resets works again.
    public VirtioWorker(string name, EventFd[] queues, Action<int> process, Action<Exception> fault)
    {
        _fault = fault;
        _queues = queues;
        _process = process;
        _poll = new PollFd[queues.Length + 1];
        for (int i = 0; i < queues.Length; i++) _poll[i] = new PollFd { Fd = queues[i].Fd, Events = PollFd.PollIn };
        _poll[^1] = new PollFd { Fd = _stop.Fd, Events = PollFd.PollIn };
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    private void Run()
    {
        while (true)
        {
            int n;
            fixed (PollFd* p = _poll) n = LibC.Poll(p, (nuint)_poll.Length, -1);
            if (n < 0) { if (LibC.LastErrno == LibC.EINTR) continue; return; }
            if (_poll[^1].Revents != 0) return;
            for (int i = 0; i < _queues.Length; i++)
            {
                if (_poll[i].Revents == 0) continue;
                _queues[i].Drain();
                try { _process(i); }
                catch (Exception e)
                {
                    // An exception leaving this thread would end the engine; one device failing must not.
                    try { _fault(e); } catch (Exception) { }
                }
            }
        }
    }

    public void Dispose()
    {
        _stop.Signal();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _stop.Dispose();
    }
}
