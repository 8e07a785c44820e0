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
}
