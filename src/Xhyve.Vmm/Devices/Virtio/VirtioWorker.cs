using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>
/// A device's worker thread: waits on one eventfd per queue (signalled by KVM through ioeventfd, or by the
/// transport when a notification exits to the vCPU thread) and hands each notified queue to the device; for a
/// device with a host fd (<see cref="IPolledVirtioDevice"/>) it waits on that fd too, with the events the device
/// wants at that moment.
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
    private readonly IPolledVirtioDevice? _polled;

    // fault: told about an exception from process; the worker then carries on waiting, so a device the driver
    // resets works again.
    // polled: the device's host fd, or null.
    public VirtioWorker(string name, EventFd[] queues, Action<int> process, Action<Exception> fault, IPolledVirtioDevice? polled = null)
    {
        _fault = fault;
        _queues = queues;
        _process = process;
        _polled = polled;
        // Queues, then the device's fd (-1 when none: poll skips it), then the stop signal.
        _poll = new PollFd[queues.Length + 2];
        for (int i = 0; i < queues.Length; i++) _poll[i] = new PollFd { Fd = queues[i].Fd, Events = PollFd.PollIn };
        _poll[^2] = new PollFd { Fd = -1 };
        _poll[^1] = new PollFd { Fd = _stop.Fd, Events = PollFd.PollIn };
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    private void Run()
    {
        while (true)
        {
            int timeout = -1;
            if (_polled != null)
            {
                short events = _polled.PollEvents;
                _poll[^2].Fd = events != 0 ? _polled.PollFd : -1;
                _poll[^2].Events = events;
                if (_polled.HasPendingWork) timeout = 0;
            }
            int n;
            fixed (PollFd* p = _poll) n = LibC.Poll(p, (nuint)_poll.Length, timeout);
            if (n < 0) { if (LibC.LastErrno == LibC.EINTR) continue; return; }
            if (_poll[^1].Revents != 0) return;
            for (int i = 0; i < _queues.Length; i++)
            {
                if (_poll[i].Revents == 0) continue;
                _queues[i].Drain();
                Guarded(i);
            }
            if (_polled != null && (_poll[^2].Fd >= 0 && _poll[^2].Revents != 0 || timeout == 0)) Guarded(-1);
        }
    }

    // queue -1: the device's fd.
    private void Guarded(int queue)
    {
        try
        {
            if (queue >= 0) _process(queue);
            else _polled!.PollReady(_poll[^2].Fd >= 0 ? _poll[^2].Revents : (short)0);
        }
        catch (Exception e)
        {
            // An exception leaving this thread would end the engine; one device failing must not.
            try { _fault(e); } catch (Exception) { }
        }
    }

    public void Dispose()
    {
        _stop.Signal();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _stop.Dispose();
    }
}
