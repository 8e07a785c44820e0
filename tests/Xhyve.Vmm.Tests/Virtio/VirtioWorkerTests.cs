using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Tests.Virtio;

public sealed class VirtioWorkerTests
{
    [Fact]
    public void Worker_WhenTheDeviceThrows_ReportsTheFault_AndKeepsServingKicks()
    {
        using var kick = new EventFd();
        var faults = new List<Exception>();
        int calls = 0;
        using var worker = new VirtioWorker("test", [kick], _ =>
        {
            if (Interlocked.Increment(ref calls) == 1) throw new InvalidCastException("device bug");
        }, e => { lock (faults) faults.Add(e); });
        kick.Signal();
        Assert.True(SpinWait.SpinUntil(() => { lock (faults) return faults.Count == 1; }, 5000), "the fault was not reported");
        Assert.IsType<InvalidCastException>(faults[0]);
        kick.Signal();
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref calls) == 2, 5000), "the worker stopped after the fault");
    }

    [Fact]
    public void Worker_WhenTheFaultHandlerThrowsToo_KeepsRunning()
    {
        using var kick = new EventFd();
        int calls = 0;
        using var worker = new VirtioWorker("test", [kick], _ => { Interlocked.Increment(ref calls); throw new InvalidOperationException(); },
            _ => throw new InvalidOperationException("handler bug"));
        kick.Signal();
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref calls) == 1, 5000));
        kick.Signal();
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref calls) == 2, 5000));
    }

    [Fact]
    public void RateLimitedLog_WritesTheFirstLine_ThenCountsWhatItDropped()
    {
        var text = new StringWriter();
        long now = 1000;
        var log = new RateLimitedLog(text, TimeSpan.FromMilliseconds(200), () => now);
        Assert.True(log.Write("first"));
        now += 199;
        Assert.False(log.Write("second"));
        Assert.False(log.Write("third"));
        now += 1;
        Assert.True(log.Write("fourth"));
        Assert.Equal(["first", "fourth (2 more since the last report)"], text.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }
}
