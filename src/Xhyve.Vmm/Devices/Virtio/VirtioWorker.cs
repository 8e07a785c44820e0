using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio;

/// <summary>
/// A device's worker thread: waits on one eventfd per queue (signalled by KVM through ioeventfd, or by the
/// transport when a notification exits to the vCPU thread) and hands each notified queue to the device; for a
/// device with host fds (<see cref="IPolledVirtioDevice"/>) it waits on those too, with the events the device
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
    private readonly int _hostFds;

    // fault: told about an exception from process; the worker then carries on waiting, so a device the driver
    // resets works again. polled: the device's host fds, or null.
    public VirtioWorker(string name, EventFd[] queues, Action<int> process, Action<Exception> fault, IPolledVirtioDevice? polled = null)
    {
        _fault = fault;
        _queues = queues;
        _process = process;
        _polled = polled;
        _hostFds = polled?.PollFdCount ?? 0;
        // Queues, then the device's fds (-1 while not wanted: poll skips them), then the stop signal.
        _poll = new PollFd[queues.Length + _hostFds + 1];
        for (int i = 0; i < queues.Length; i++) _poll[i] = new PollFd { Fd = queues[i].Fd, Events = PollFd.PollIn };
        for (int i = 0; i < _hostFds; i++) _poll[queues.Length + i] = new PollFd { Fd = -1 };
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
                for (int i = 0; i < _hostFds; i++)
                {
                    ref var entry = ref _poll[_queues.Length + i];
                    short events = _polled.PollEvents(i);
                    entry.Fd = events != 0 ? _polled.PollFd(i) : -1;
                    entry.Events = events;
                    entry.Revents = 0;
                }
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
                try { _process(i); }
                catch (Exception e) { Fault(e); }
            }
            for (int i = 0; i < _hostFds; i++)
            {
                var entry = _poll[_queues.Length + i];
                if (entry.Fd >= 0 && entry.Revents != 0) PollReady(i, entry.Revents);
            }
            if (timeout == 0) PollReady(-1, 0);   // the device's pending work
        }
    }

    private void PollReady(int index, short revents)
    {
        try { _polled!.PollReady(index, revents); }
        catch (Exception e) { Fault(e); }
    }

    // An exception leaving this thread would end the engine; one device failing must not.
    private void Fault(Exception e)
    {
        try { _fault(e); } catch (Exception) { }
    }

    public void Dispose()
    {
        _stop.Signal();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _stop.Dispose();
    }
}
