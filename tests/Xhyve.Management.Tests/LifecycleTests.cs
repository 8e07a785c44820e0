using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>Issue 13 item 3: the VM lifecycle through the launcher: reboots keep a VM Running in its engine, waits end
/// when the awaited state cannot come, an engine that does not answer is NotResponding and can still be turned off.</summary>
public sealed class LifecycleTests() : EngineTestBase("xhyve-life")
{
    private readonly List<int> _stopped = [];

    public override void Dispose()
    {
        foreach (int pid in _stopped) Signal(pid, "CONT");   // an engine a test stopped (SIGSTOP) goes on, so the cleanup turns it off the usual way
        base.Dispose();
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = Process.Start("kill", $"-{signal} {pid}")!;
        kill.WaitForExit();
    }

    /// <summary>Stops the engine with SIGSTOP (let go again on Dispose) and waits until every thread of it stopped.</summary>
    private void Freeze(int pid)
    {
        _stopped.Add(pid);
        Signal(pid, "STOP");
        WaitUntilStopped(pid);
    }

    /// <summary>kill(1) returns once SIGSTOP is sent: a thread that was running (the engine's control server) could
    /// still answer a request until every thread shows the stopped state.</summary>
    private static void WaitUntilStopped(int pid)
    {
        var clock = Stopwatch.StartNew();
        while (Directory.EnumerateDirectories($"/proc/{pid}/task").Select(task => ProcessState(pid, Path.GetFileName(task))).Any(s => s is not ("T" or "t" or "gone")))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"engine {pid} did not stop within 10 s of SIGSTOP");
            Thread.Sleep(10);
        }
    }

    /// <summary>The state letter in /proc/PID/stat, or a thread's (Z for a zombie not yet reaped), or "gone".</summary>
    private static string ProcessState(int pid, string? thread = null)
    {
        try
        {
            string stat = File.ReadAllText(thread == null ? $"/proc/{pid}/stat" : $"/proc/{pid}/task/{thread}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
        }
        catch (IOException) { return "gone"; }
    }

    private static int Count(string text, string what) => Regex.Matches(text, Regex.Escape(what)).Count;

    private void WaitForLog(string name, string what, int times)
    {
        var clock = Stopwatch.StartNew();
        while (Count(_host.ReadConsole(name), what) < times)
        {
            Assert.True(clock.Elapsed < StartTimeout, $"'{what}' did not appear {times} times; the log:\n{_host.ReadConsole(name)}");
            Thread.Sleep(20);
        }
    }

    [SkippableFact]
    public void AGuestReboot_KeepsTheVmRunning_InTheSameEngine_WithTheConsoleLogGoingOn()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        // The hello guest resets once it has read one byte; its next boot waits for a byte again.
        var vm = Create("reboots", "hello", "echo=1");
        var started = _host.Start(vm, StartTimeout);
        WaitForLog("reboots", "echo_ready=1", 1);
        using (var client = _host.Connect("reboots")) client.OpenConsole(history: false).Send("x"u8.ToArray());
        WaitForLog("reboots", "echo_ready=1", 2);
        var status = _host.WaitFor("reboots", s => s.State == VmState.Running, StartTimeout, null);
        Assert.NotNull(status);
        Assert.Equal((started.ProcessId, 1), (status.ProcessId, status.Resets));
        Assert.Equal(2, Count(_host.ReadConsole("reboots"), "Hello from the XhyvePS hello guest"));
        Assert.True(status.Uptime < TimeSpan.FromSeconds(20), $"the uptime {status.Uptime} did not start again");
    }

    [SkippableFact]
    public void AGuestThatResetsAtOnce_IsNotReportedAsNotStarted_AndEndsInAResetStorm()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("storm", "power", "reset=1");
        var started = _host.Start(vm, StartTimeout);   // throws "did not start" without the fix
        Assert.True(started.State != VmState.Off || started.ExitCode == 2, started.ToString());
        var off = _host.WaitFor("storm", s => s.State == VmState.Off, TimeSpan.FromSeconds(60), null);
        Assert.NotNull(off);
        Assert.Equal(2, off.ExitCode);
        Assert.Contains("reset storm", off.ExitReason);
        Assert.True(Count(_host.ReadConsole("storm"), "XHYVE-TEST reset=1") >= 2);
    }

    [SkippableFact]
    public void ARestart_ResetsInPlace_AndAReboot_GoesThroughTheGuestsShutdown_BothKeepingThePid()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("restart", "power", "button=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        WaitForLog("restart", "ready=1", 1);
        var reset = _host.Restart("restart", reboot: false, StartTimeout, force: false);
        Assert.Equal((VmState.Running, pid, 1), (reset.State, reset.ProcessId, reset.Resets));
        WaitForLog("restart", "ready=1", 2);
        var rebooted = _host.Restart("restart", reboot: true, StartTimeout, force: false);
        Assert.Equal((VmState.Running, pid, 2), (rebooted.State, rebooted.ProcessId, rebooted.Resets));
        Assert.Contains("button=pressed", _host.ReadConsole("restart"));   // the guest saw the power button and shut down
    }

    [SkippableFact]
    public void ARebootWithForce_OfAGuestThatDoesNotListenToThePowerButton_ResetsIt_AndWithoutForceIsRefused()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("deaf", "hello", "spin=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        Assert.Contains("power-button event", Assert.Throws<EngineException>(() => _host.Restart("deaf", reboot: true, StartTimeout, force: false)).Message);
        Assert.Equal(0, _host.GetStatus("deaf").Resets);
        var restarted = _host.Restart("deaf", reboot: true, StartTimeout, force: true);
        Assert.Equal((VmState.Running, pid, 1), (restarted.State, restarted.ProcessId, restarted.Resets));
    }

    [SkippableFact]
    public void AnEngineStoppedWithSigstop_IsNotResponding_WithinASecond_AndTurnOffKillsIt()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("frozen", "hello", "spin=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        Freeze(pid);
        var clock = Stopwatch.StartNew();
        var status = _host.GetStatus("frozen");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"the status took {clock.Elapsed}");
        Assert.Equal((VmState.NotResponding, pid), (status.State, status.ProcessId));

        var off = _host.TurnOff("frozen");
        Assert.Equal((VmState.Off, EngineHost.KilledExitCode), (off.State, off.ExitCode));
        Assert.Contains("killed by the management library", off.ExitReason);
        string state = ProcessState(pid);
        Assert.True(state is "gone" or "Z", $"the engine is still there (state {state})");
        Assert.False(File.Exists(_host.FileOf("frozen", EngineHost.PidFile)));
        Assert.False(File.Exists(_host.FileOf("frozen", EngineHost.ControlSocketFile)));
        // And it starts again.
        Assert.Equal(VmState.Running, _host.Start(vm, StartTimeout).State);
    }

    [SkippableFact]
    public void AnEngineWhoseSocketIsGone_IsStopping_NotNotResponding_AndTurnOffKillsItOnlyAfterWaitingForItsExit()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("exiting", "hello", "spin=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        // What an exiting engine looks like for the seconds its machine takes to tear down: alive, socket removed first,
        // no exit file yet; and past the start's allowance, as an engine that has run for a minute is.
        File.Delete(_host.FileOf("exiting", EngineHost.ControlSocketFile));
        File.SetLastWriteTimeUtc(_host.FileOf("exiting", EngineHost.PidFile), DateTime.UtcNow - TimeSpan.FromMinutes(1));
        var status = _host.GetStatus("exiting");
        Assert.Equal((VmState.Stopping, pid), (status.State, status.ProcessId));

        // This engine cannot be reached and never exits on its own: TurnOff gives it the exiting allowance, then kills it
        // saying why. (One that does exit meanwhile ends with its own exit file, as a clean power-off.)
        var clock = Stopwatch.StartNew();
        var off = _host.TurnOff("exiting");
        Assert.True(clock.Elapsed >= EngineHost.ExitingTimeout, $"killed after {clock.Elapsed}, without waiting for the engine to exit");
        Assert.Equal((VmState.Off, EngineHost.KilledExitCode), (off.State, off.ExitCode));
        Assert.Contains("control socket", off.ExitReason);
        Assert.Contains("is gone, so it cannot be reached, and it did not exit within 10 s", off.ExitReason);
        string state = ProcessState(pid);
        Assert.True(state is "gone" or "Z", $"the engine is still there (state {state})");
    }

    [SkippableFact]
    public void AKill_WaitsForTheStartLock_AndWritesItsExitFileWithoutFollowingASymlink()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("locked", "hello", "spin=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        Freeze(pid);
        // A name the old writer created its temporary file at, planted as a link to a file it must not touch.
        string victim = Path.Combine(_root, "victim.txt");
        File.WriteAllText(victim, "untouched");
        File.CreateSymbolicLink(_host.FileOf("locked", EngineHost.ExitFileName) + ".tmp", victim);

        // A start holding the VM's lock: the kill waits for it, and gives up rather than removing files under it.
        using (_store.LockForStart("locked", TimeSpan.FromSeconds(1)))
        {
            var e = Assert.Throws<EngineException>(() => _host.TurnOff("locked"));
            Assert.Contains("cannot be killed now", e.Message);
            Assert.Equal("T", ProcessState(pid));
            Assert.True(File.Exists(_host.FileOf("locked", EngineHost.PidFile)));
        }
        var off = _host.TurnOff("locked");
        Assert.Equal((VmState.Off, EngineHost.KilledExitCode), (off.State, off.ExitCode));
        Assert.Equal("untouched", File.ReadAllText(victim));
        Assert.Contains("\"Killed\"", File.ReadAllText(_host.FileOf("locked", EngineHost.ExitFileName)));
    }

    [SkippableFact]
    public void WaitingForRunning_OnAVmThatRuns_AnswersWithItsEnginesStatus()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var started = _host.Start(Create("runwait", "hello", "spin=1"), StartTimeout);
        var progress = new List<TimeSpan>();
        var status = _host.WaitForRunning("runwait", TimeSpan.FromSeconds(60), progress.Add);
        Assert.Equal(VmState.Running, status?.State);
        Assert.Equal(started.ProcessId, status?.ProcessId);
        Assert.NotNull(status?.Uptime);
        Assert.Empty(progress);   // no slice of waiting was needed
    }

    [SkippableFact]
    public void WaitingForRunningOrConsoleText_OnAVmThatIsOff_EndsAtOnce()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("offwait", "power", "s5=1");
        _host.Start(vm, StartTimeout);
        Assert.NotNull(_host.WaitFor("offwait", s => s.State == VmState.Off, StartTimeout, null));
        var clock = Stopwatch.StartNew();
        var status = _host.WaitFor("offwait", s => s.State == VmState.Running, TimeSpan.FromSeconds(60), null, s => s.State == VmState.Off);
        Assert.Equal(VmState.Off, status?.State);
        Assert.Equal(VmState.Off, _host.WaitForRunning("offwait", TimeSpan.FromSeconds(60), null)?.State);   // Wait-XhyveVM's
        Assert.Null(_host.WaitForConsole("offwait", new Regex("never printed"), TimeSpan.FromSeconds(60), null, untilOff: true));
        Assert.Equal("s5=1", _host.WaitForConsole("offwait", new Regex("s5=1"), TimeSpan.FromSeconds(60), null, untilOff: true));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the waits took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("""{"state":"Running","pid":1,"startedUtc":"2026-01-01T00:00:00Z","uptimeSeconds":63929923200}""", 5.0, null)]   // DateTime.MinValue's age
    [InlineData("""{"state":"Running","pid":1,"startedUtc":"2026-01-01T00:00:00Z","uptimeSeconds":-3}""", 5.0, null)]
    [InlineData("""{"state":"Starting","pid":1,"startedUtc":null,"uptimeSeconds":0}""", 5.0, null)]
    [InlineData("""{"state":"Running","pid":1,"startedUtc":"2026-01-01T00:00:00Z","uptimeSeconds":4.5}""", 5.0, 4.5)]
    [InlineData("""{"state":"Running","pid":1,"startedUtc":"2026-01-01T00:00:00Z","uptimeSeconds":4.5}""", null, 4.5)]
    public void AnUptimeThatCannotBe_IsDropped(string reply, double? engineAgeSeconds, double? expected)
    {
        using var doc = JsonDocument.Parse(reply);
        var status = EngineHost.StatusFrom(doc.RootElement, engineAgeSeconds is double a ? TimeSpan.FromSeconds(a) : null);
        Assert.Equal(expected, status.Uptime?.TotalSeconds);
    }
}
