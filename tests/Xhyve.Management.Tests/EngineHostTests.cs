using System.Diagnostics;
using System.Text.RegularExpressions;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>The launcher and control client against real engines running the test guests.</summary>
public sealed class EngineHostTests() : EngineTestBase("xhyve-host")
{
    [SkippableFact]
    public void Start_Pause_Resume_AndThePowerButton_EndWithExitCodeZero()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("power", "power", "button=1");
        var started = _host.Start(vm, StartTimeout);
        Assert.Equal(VmState.Running, started.State);
        Assert.NotNull(_host.WaitForConsole("power", new Regex("ready=1"), StartTimeout, null));
        Assert.Equal("Paused", _host.Control("power", "pause").GetProperty("state").GetString());
        Assert.Equal(VmState.Paused, _host.GetStatus("power").State);
        _host.Control("power", "resume");
        var status = _host.GetStatus("power");
        Assert.Equal(VmState.Running, status.State);
        Assert.True(status.Uptime > TimeSpan.Zero);
        var off = _host.Stop("power", TimeSpan.FromSeconds(20), force: false);
        Assert.Equal((VmState.Off, 0, false), (off.State, off.ExitCode, off.EngineDied));
        Assert.Contains("button=pressed", _host.ReadConsole("power"));
    }

    [SkippableFact]
    public void AGuestThatIgnoresThePowerButton_IsTurnedOffWithForce_AndRefusedWithout()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("spin", "hello", "spin=1");
        _host.Start(vm, StartTimeout);
        var e = Assert.Throws<EngineException>(() => _host.Stop("spin", TimeSpan.FromSeconds(2), force: false));
        Assert.Contains("power-button event", e.Message);
        Assert.Equal(VmState.Running, _host.GetStatus("spin").State);
        var off = _host.Stop("spin", TimeSpan.FromSeconds(2), force: true);
        Assert.Equal((VmState.Off, 0), (off.State, off.ExitCode));
        Assert.Contains("control API", off.ExitReason);
    }

    [SkippableFact]
    public void AConsoleConnection_OutlastsTheReplyTimeout_WhileTheGuestIsSilent()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("echo", "hello", "echo=3 spin=1");
        _host.Start(vm, StartTimeout);
        Assert.NotNull(_host.WaitForConsole("echo", new Regex("echo_ready=3"), StartTimeout, null));
        // A 1 s reply timeout; the guest says nothing until it gets input 2.5 s later (Connect-XhyveVM used to
        // detach by itself after the 10 s reply timeout of silence).
        using var client = new ControlClient(_host.FileOf("echo", EngineHost.ControlSocketFile), TimeSpan.FromSeconds(1));
        var console = client.OpenConsole(history: false);
        var reader = Task.Run(() =>
        {
            var received = new System.Text.StringBuilder();
            var buffer = new byte[256];
            int n;
            while (!received.ToString().Contains("echo=abc") && (n = console.Receive(buffer)) > 0)
                received.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, n));
            return received.ToString();
        });
        Thread.Sleep(2500);
        console.Send("abc"u8.ToArray());
        Assert.True(reader.Wait(TimeSpan.FromSeconds(30)), "the guest's echo never arrived");
        Assert.Contains("echo=abc", reader.Result);
    }

    [SkippableFact]
    public void AKilledEngine_IsReportedDead_WithTheLastConsoleLines()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("victim", "hello", "spin=1");
        int pid = _host.Start(vm, StartTimeout).ProcessId!.Value;
        Assert.NotNull(_host.WaitForConsole("victim", new Regex("ready"), StartTimeout, null));
        Process.GetProcessById(pid).Kill();
        var status = _host.WaitFor("victim", s => s.State == VmState.Off, TimeSpan.FromSeconds(10), null);
        Assert.NotNull(status);
        Assert.True(status.EngineDied);
        Assert.Null(status.ExitCode);
        Assert.Contains($"pid {pid}", status.ExitReason);
        Assert.Contains(status.LastConsoleLines!, l => l.Contains("ready"));
        // And it can be started again.
        Assert.Equal(VmState.Running, _host.Start(vm, StartTimeout).State);
    }

    [SkippableFact]
    public void AnEngineThatCannotStart_ReportsWhy_AndTheVmStaysOff()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        string notAKernel = Path.Combine(_root, "notakernel");
        File.WriteAllText(notAKernel, "hello");
        var vm = _store.Create(new VirtualMachine { Name = "bad", KernelPath = notAKernel });
        var e = Assert.Throws<EngineException>(() => _host.Start(vm, StartTimeout));
        Assert.Contains("did not start", e.Message);
        Assert.Contains(notAKernel, e.Message);
        var status = _host.GetStatus("bad");
        Assert.Equal((VmState.Off, 1), (status.State, status.ExitCode));
    }

    [SkippableFact]
    public void StoppingAVmThatWentOffOnItsOwn_ReportsHowItEnded()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        // The power guest powers off at once (S5): a stop that comes a moment too late finds no engine to talk to.
        var vm = Create("gone", "power", "s5=1");
        _host.Start(vm, StartTimeout);
        Assert.NotNull(_host.WaitFor("gone", s => s.State == VmState.Off, StartTimeout, null));
        Assert.Equal((VmState.Off, 0), (_host.TurnOff("gone").State, _host.TurnOff("gone").ExitCode));
        Assert.Equal((VmState.Off, 0), (_host.Stop("gone", TimeSpan.FromSeconds(5), force: false).State, _host.GetStatus("gone").ExitCode));
    }

    [SkippableFact]
    public void StartingARunningVm_IsRefused()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("twice", "hello", "spin=1");
        _host.Start(vm, StartTimeout);
        Assert.Contains("already Running", Assert.Throws<EngineException>(() => _host.Start(vm, StartTimeout)).Message);
        _host.TurnOff("twice");
    }

    [Fact]
    public void AMissingEngine_IsNamed()
    {
        var host = new EngineHost(_store, "/nonexistent/xhyve");
        var vm = _store.Create(new VirtualMachine { Name = "x", KernelPath = "/k" });
        Assert.Contains("/nonexistent/xhyve does not exist", Assert.Throws<EngineException>(() => host.Start(vm, StartTimeout)).Message);
    }

    [Fact]
    public void AnEngineWithoutItsExecuteBit_IsNamed_BeforeAnythingIsLaunched()
    {
        // A package install (a nupkg is a zip) can drop the mode; the start used to wait out its timeout for a socket.
        string engine = Path.Combine(_root, "xhyve");
        File.WriteAllText(engine, "#!/bin/sh\n");
        File.SetUnixFileMode(engine, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var host = new EngineHost(_store, engine);
        var vm = _store.Create(new VirtualMachine { Name = "x", KernelPath = "/k" });
        Assert.Contains($"{engine} is not executable", Assert.Throws<EngineException>(() => host.Start(vm, StartTimeout)).Message);
        Assert.False(File.Exists(host.FileOf("x", EngineHost.EngineLogFile)));
    }

    [SkippableFact]
    public void AnEngineLogThatIsASymlink_IsRefused_AndNothingIsWrittenThroughIt()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("linked", "hello", "");
        string target = Path.Combine(_root, "written-through-the-link");
        File.CreateSymbolicLink(Path.Combine(_store.FolderOf("linked"), EngineHost.EngineLogFile), target);
        var e = Assert.Throws<EngineException>(() => _host.Start(vm, StartTimeout));
        Assert.Contains("engine log", e.Message);
        Assert.Contains("symbolic link", e.Message);
        Assert.False(File.Exists(target));
        Assert.Equal(VmState.Off, _host.GetStatus("linked").State);
    }

    // Issue 11 item 9: two starts at once launch one engine.

    [SkippableFact]
    public void TwoSimultaneousStarts_GiveOneSuccess_AndOneAlreadyStartingOrRunningError()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("race", "hello", "spin=1");
        for (int round = 0; round < 3; round++)
        {
            using var gate = new Barrier(2);
            // Separate hosts and stores, as two shells would have.
            var starts = Enumerable.Range(0, 2).Select(_ => Task.Run(EngineException? () =>
            {
                var host = new EngineHost(new VmStore(_root), _host.EnginePath);
                gate.SignalAndWait();
                try { host.Start(vm, StartTimeout); return null; }
                catch (EngineException e) { return e; }
            })).ToArray();
            Task.WaitAll(starts);
            var error = Assert.Single(starts.Select(t => t.Result).OfType<EngineException>());
            Assert.Matches("VM 'race' is already (starting|Running)", error.Message);
            Assert.Equal(VmState.Running, _host.GetStatus("race").State);
            _host.TurnOff("race");
        }
    }

    [Fact]
    public void AStartWhileAnotherHoldsTheStartLock_IsRefusedAsAlreadyStarting()
    {
        var vm = _store.Create(new VirtualMachine { Name = "held", KernelPath = "/k" });
        using (_store.LockForStart("held", TimeSpan.Zero))
        {
            var e = Assert.Throws<EngineException>(() => _host.Start(vm, StartTimeout));
            Assert.StartsWith("VM 'held' is already starting", e.Message);
        }
        Assert.False(File.Exists(_host.FileOf("held", EngineHost.EngineLogFile)), "the refused start launched an engine");
    }
}
