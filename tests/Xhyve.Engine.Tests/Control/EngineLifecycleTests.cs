using Xhyve.Engine.Runtime;
using Xhyve.Vmm;

namespace Xhyve.Engine.Tests.Control;

/// <summary>The engine's life across boots (EngineLifecycle) without KVM: the lifecycle only reaches the machine
/// through the runner and the power button, so these boots attach runners that never start.</summary>
public sealed class EngineLifecycleTests
{
    private static readonly Dictionary<int, int> NoPinning = [];

    private static VmRunner AttachBoot(EngineLifecycle lifecycle)
    {
        var runner = new VmRunner(NoPinning);
        lifecycle.Attach(null!, runner);   // no call here reaches the machine
        return runner;
    }

    [Fact]
    public void AReset_AskedForWhileTheMachineIsRebuilt_IsRefused_AndDoesNotRestartTheNextBootAtItsEnd()
    {
        var lifecycle = new EngineLifecycle(OnReset.Exit);
        AttachBoot(lifecycle);
        Assert.Null(lifecycle.RequestReset("reset through the control API", out _));
        Assert.True(lifecycle.Finish(VmExitStatus.Reset, "reset through the control API", TimeSpan.FromSeconds(5)).Restart);

        // No machine is attached while it is built again.
        Assert.Equal("the VM is restarting already", lifecycle.RequestReset("reset through the control API", out _));

        AttachBoot(lifecycle);
        var end = lifecycle.Finish(VmExitStatus.PoweredOff, "the guest powered off", TimeSpan.FromSeconds(5));
        Assert.False(end.Restart, "a reset asked for during the rebuild restarted the next boot when the guest powered off");
        Assert.Equal(VmExitStatus.PoweredOff, end.Status);
    }

    [Fact]
    public void AReset_IsRefused_WhileTheCurrentMachineIsAlreadyStoppingToRestart()
    {
        var lifecycle = new EngineLifecycle(OnReset.Restart);
        AttachBoot(lifecycle);
        Assert.Null(lifecycle.RequestReset("first", out _));
        Assert.Equal("the VM is restarting already", lifecycle.RequestReset("second", out _));
    }

    [Fact]
    public void ResetsBefore_IsTheCountWhenTheResetWasAsked_AndAResetCountsOnceTheNewMachineIsAttached()
    {
        var lifecycle = new EngineLifecycle(OnReset.Exit);
        AttachBoot(lifecycle);
        Assert.Null(lifecycle.RequestReset("reset through the control API", out int before));
        Assert.Equal(0, before);
        Assert.True(lifecycle.Finish(VmExitStatus.Reset, "reset through the control API", TimeSpan.FromSeconds(5)).Restart);
        // A rebuild that fails here must not be reported as a reset done.
        Assert.Equal(0, lifecycle.Resets);
        AttachBoot(lifecycle);
        Assert.Equal(1, lifecycle.Resets);
        Assert.Null(lifecycle.RequestReset("reset through the control API", out before));
        Assert.Equal(1, before);
    }

    [Fact]
    public void WillRestart_SaysNo_ForTheGuestResetThatMeetsTheStormLimit_AsFinishDecides()
    {
        var lifecycle = new EngineLifecycle(OnReset.Restart);
        for (int reset = 1; reset < EngineLifecycle.StormLimit; reset++)
        {
            var runner = AttachBoot(lifecycle);
            runner.RequestStop(VmExitStatus.Reset, "vCPU 0: system reset");
            Assert.True(lifecycle.WillRestart(runner), $"reset {reset}");
            Assert.True(lifecycle.Finish(VmExitStatus.Reset, runner.StopReason, TimeSpan.Zero).Restart, $"reset {reset}");
        }
        var last = AttachBoot(lifecycle);
        last.RequestStop(VmExitStatus.Reset, "vCPU 0: system reset");
        Assert.False(lifecycle.WillRestart(last), "the state says Starting while the engine is about to end for the reset storm");
        Assert.False(lifecycle.Finish(VmExitStatus.Reset, last.StopReason, TimeSpan.Zero).Restart);
    }

    [Fact]
    public void End_NamesTheStatusAndReason_OfAStopAskedForWhileNoMachineRuns()
    {
        var lifecycle = new EngineLifecycle(OnReset.Restart);
        Assert.Null(lifecycle.End);
        lifecycle.RequestStop(VmExitStatus.PoweredOff, "turned off through the control API");
        Assert.Equal((VmExitStatus.PoweredOff, "turned off through the control API"), lifecycle.End);
    }

    [Fact]
    public void Changed_CompletesAtEachStateChange_AttachStopFinishAndClose_AndAFreshOneWaitsForTheNext()
    {
        var lifecycle = new EngineLifecycle(OnReset.Restart);
        var before = lifecycle.Changed;
        var runner = AttachBoot(lifecycle);
        Assert.True(before.IsCompleted, "attaching a boot did not signal");

        var attached = lifecycle.Changed;
        Assert.False(attached.IsCompleted, "a signal read after the change completed already");
        runner.RequestStop(VmExitStatus.Reset, "the guest reset");   // the runner's own stop reaches the lifecycle
        Assert.True(attached.IsCompleted, "a stop of the runner did not signal");

        var stopping = lifecycle.Changed;
        Assert.True(lifecycle.Finish(VmExitStatus.Reset, "the guest reset", TimeSpan.FromSeconds(5)).Restart);
        Assert.True(stopping.IsCompleted, "the end of a boot did not signal");
        Assert.False(lifecycle.Ending);

        AttachBoot(lifecycle);
        var second = lifecycle.Changed;
        Assert.False(lifecycle.Finish(VmExitStatus.PoweredOff, "the guest powered off", TimeSpan.FromSeconds(5)).Restart);
        Assert.True(second.IsCompleted);
        // No next boot: the engine is ending, with the boot's reason (a waiter is told it).
        Assert.True(lifecycle.Ending);
        Assert.Equal("the guest powered off", lifecycle.End?.Reason);

        var ended = lifecycle.Changed;
        lifecycle.Close("the engine is ending");
        Assert.True(ended.IsCompleted, "closing did not signal");
        Assert.Equal("the guest powered off", lifecycle.End?.Reason);   // the first reason stays
    }
}
