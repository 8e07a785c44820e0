using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
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

    // Issue 16 item 4: the engine is launched without a shell and the start returns once the guest runs.

    [SkippableFact]
    public void Start_LaunchesTheEngineItself_WithNoShell_ItsStreamsOnTheLogAndDevNull_AndReturnsRunning()
    {
        Skip.IfNot(HasKvm, KvmSkipReason);
        var vm = Create("direct", "hello", "spin=1");
        string log = _host.FileOf("direct", EngineHost.EngineLogFile);
        File.WriteAllText(log, "a line from an earlier run\n");
        var started = _host.Start(vm, StartTimeout);
        // Running comes from the engine once the BSP entered the guest: it has a start time.
        Assert.Equal(VmState.Running, started.State);
        Assert.NotNull(started.Uptime);
        int pid = started.ProcessId!.Value;

        var argv = File.ReadAllText($"/proc/{pid}/cmdline").TrimEnd('\0').Split('\0');
        Assert.Equal(_host.EnginePath, argv[0]);
        Assert.Equal(["--engine-log", log], argv[1..3]);
        // The shell hop needed the log's path in an environment variable, which its exec passed on to the engine.
        Assert.DoesNotContain(File.ReadAllText($"/proc/{pid}/environ").Split('\0'), v => v.StartsWith("XHYVE_ENGINE_LOG=", StringComparison.Ordinal));
        Assert.Equal("/dev/null", ReadLink($"/proc/{pid}/fd/0"));
        Assert.Equal(log, ReadLink($"/proc/{pid}/fd/1"));
        Assert.Equal(log, ReadLink($"/proc/{pid}/fd/2"));
        // Its own session (setsid), and not a child of this process: nothing here has to reap it.
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(pid.ToString(), fields[3]);                        // session id
        Assert.NotEqual(Environment.ProcessId.ToString(), fields[1]);   // parent pid
        Assert.StartsWith("a line from an earlier run\n", File.ReadAllText(log));
    }

    private static string? ReadLink(string path) => new FileInfo(path).LinkTarget;

    [Fact]
    public void TheLaunch_RunsTheEngineDirectlyUnderSetsid_WithItsArgumentsUnquoted()
    {
        var argv = EngineHost.LaunchArguments("/opt/x y/xhyve", "/vms/a b/engine.log", ["-U", "$HOME 'q'"]).ToList();
        Assert.Equal(["--fork", "/opt/x y/xhyve", "--engine-log", "/vms/a b/engine.log", "-U", "$HOME 'q'"], argv);
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

    /// <summary>A stand-in engine for what a real one does only in a race: a process whose command line names the VM's
    /// control socket (which is how the host recognises its engine) and a socket served here, counting restarts as
    /// <paramref name="onRestart"/> says and replying with the given extra members.</summary>
    private sealed class FakeEngine : IDisposable
    {
        private readonly Process _process;
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly Thread _thread;
        public int Resets;
        /// <summary>Paused before its BSP ever entered the guest ("Paused" with startedUtc null) until cleared (resumed).</summary>
        public volatile bool PausedBeforeRun;

        public FakeEngine(EngineHost host, string name, Func<FakeEngine, string> onRestart)
        {
            string socket = host.FileOf(name, EngineHost.ControlSocketFile);
            _process = Process.Start(new ProcessStartInfo("sh") { ArgumentList = { "-c", "sleep 120", socket } })!;
            File.WriteAllText(host.FileOf(name, EngineHost.PidFile), _process.Id + "\n");
            _listener.Bind(new UnixDomainSocketEndPoint(socket));
            _listener.Listen();
            _thread = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        using var connection = _listener.Accept();
                        using var reader = new StreamReader(new NetworkStream(connection));
                        for (string? line; (line = reader.ReadLine()) != null;)
                        {
                            if (line.StartsWith("wait-running timeout_ms=", StringComparison.Ordinal))
                            {
                                // As the engine waits: until the VM runs (resumed), or timeout_ms.
                                var waited = Stopwatch.StartNew();
                                int ms = int.Parse(line["wait-running timeout_ms=".Length..]);
                                while (PausedBeforeRun && waited.ElapsedMilliseconds < ms) Thread.Sleep(10);
                                if (PausedBeforeRun)
                                {
                                    connection.Send(Encoding.UTF8.GetBytes($"{{\"ok\":false,\"error\":\"not running after {ms} ms\"}}\n"));
                                    continue;
                                }
                            }
                            string extra = line is "reset" or "reboot" ? onRestart(this) : "";
                            string state = PausedBeforeRun ? "Paused" : "Running";
                            string reply = $"{{\"ok\":true,\"state\":\"{state}\",\"pid\":{_process.Id},\"startedUtc\":null,\"resets\":{Resets}{extra}}}\n";
                            connection.Send(Encoding.UTF8.GetBytes(reply));
                        }
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException) { }
            }) { IsBackground = true };
            _thread.Start();
        }

        public void Dispose()
        {
            _listener.Dispose();
            _process.Kill();
            _process.WaitForExit();
            _process.Dispose();
        }
    }

    [Fact]
    public void ARestart_WhoseReplyAlreadyCountsIt_IsDone_NotWaitedForForever()
    {
        _store.Create(new VirtualMachine { Name = "race", KernelPath = "/vm/vmlinuz" });
        // The engine counted the restart before it replied (it can: the reply is written after the machine thread ran).
        using var engine = new FakeEngine(_host, "race", e => { e.Resets++; return ""; });
        engine.Resets = 3;
        var clock = Stopwatch.StartNew();
        var status = _host.Restart("race", reboot: false, TimeSpan.FromSeconds(5), force: false);
        Assert.Equal((VmState.Running, 4), (status.State, status.Resets));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"the restart took {clock.Elapsed}");
    }

    [Fact]
    public void ARestart_TakesResetsBefore_FromTheReply_WhenTheEngineGivesIt()
    {
        _store.Create(new VirtualMachine { Name = "told", KernelPath = "/vm/vmlinuz" });
        // The guest rebooted on its own between the host's first look (5) and the command: the engine says it restarts
        // from 6, so 6 is not yet this restart; it is counted (7) a moment later.
        using var engine = new FakeEngine(_host, "told", e =>
        {
            int before = ++e.Resets;
            ThreadPool.QueueUserWorkItem(_ => { Thread.Sleep(300); Interlocked.Increment(ref e.Resets); });
            return $",\"resetsBefore\":{before}";
        });
        engine.Resets = 5;
        var status = _host.Restart("told", reboot: true, TimeSpan.FromSeconds(5), force: false);
        Assert.Equal((VmState.Running, 7), (status.State, status.Resets));
    }

    // Issue 16 follow-up: a VM paused before it ran is not Running yet.

    [Fact]
    public void WaitForRunning_OnAVmPausedBeforeItRan_WaitsUntilItIsResumed()
    {
        _store.Create(new VirtualMachine { Name = "held", KernelPath = "/vm/vmlinuz" });
        using var engine = new FakeEngine(_host, "held", _ => "") { PausedBeforeRun = true };
        var resumed = Task.Run(() => { Thread.Sleep(1500); engine.PausedBeforeRun = false; });
        var status = _host.WaitForRunning("held", TimeSpan.FromSeconds(20), null);
        Assert.True(resumed.IsCompleted, "WaitForRunning returned before the VM was resumed");
        Assert.Equal(VmState.Running, status?.State);
    }

    [Fact]
    public void WaitForRunning_OnAVmPausedBeforeItRan_IsNotRunningWhenTheTimeoutEnds()
    {
        _store.Create(new VirtualMachine { Name = "held", KernelPath = "/vm/vmlinuz" });
        using var engine = new FakeEngine(_host, "held", _ => "") { PausedBeforeRun = true };
        Assert.Null(_host.WaitForRunning("held", TimeSpan.FromSeconds(2), null));
    }

    // Issue 16 follow-up: an engine that dies before it serves its socket is noticed without waiting out the timeout.

    private string ScriptEnginePath => Path.Combine(_root, "fake-xhyve");

    /// <summary>Starts VM <paramref name="name"/> with a stand-in engine, a shell script run by setsid as the real engine
    /// is (the VM's socket path is among its arguments, so the host recognises it): the start's error, which must come
    /// well before the start's timeout.</summary>
    private EngineException StartFailsAtOnce(string name, string script)
    {
        File.WriteAllText(ScriptEnginePath, script);
        File.SetUnixFileMode(ScriptEnginePath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var host = new EngineHost(_store, ScriptEnginePath);
        var vm = _store.Create(new VirtualMachine { Name = name, KernelPath = "/k" });
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<EngineException>(() => host.Start(vm, StartTimeout));
        Assert.True(clock.Elapsed < StartTimeout / 2, $"the start waited {clock.Elapsed}");
        Assert.Equal(VmState.Off, host.GetStatus(name).State);
        return e;
    }

    [Fact]
    public void AnEngineSetsidCannotExecute_FailsTheStartAtOnce_WithSetsidsMessage()
    {
        var e = StartFailsAtOnce("noexec", "#!/nonexistent/interpreter\n");
        Assert.StartsWith("VM 'noexec' did not start: setsid: failed to execute", e.Message);
        Assert.Contains(ScriptEnginePath, e.Message);
    }

    [Fact]
    public void AnEngineKilledBeforeItsPidFile_FailsTheStartAtOnce_SayingSo()
    {
        var e = StartFailsAtOnce("early", "#!/bin/sh\nexec 2>/dev/null\nkill -9 $$\n");
        Assert.StartsWith("VM 'early' did not start: the engine ended before it wrote its pid file or an exit status", e.Message);
    }

    [Fact]
    public void AnEngineKilledWhileBuildingTheMachine_FailsTheStartAtOnce_SayingItWasKilledOrCrashed()
    {
        // It writes its pid file (as the engine does first) and is killed before it binds its socket.
        var e = StartFailsAtOnce("crash", "#!/bin/sh\nexec 2>/dev/null\nwhile [ $# -gt 0 ]; do [ \"$1\" = -F ] && echo $$ > \"$2\"; shift; done\nkill -9 $$\n");
        Assert.StartsWith("VM 'crash' did not start: the engine (pid ", e.Message);
        Assert.Contains("ended without reporting an exit status: it was killed or crashed", e.Message);
    }

    [Theory]
    [InlineData(137, null, "the engine was killed by signal 9 (SIGKILL) (exit status 137)")]
    [InlineData(1, null, "the engine exited with status 1")]
    [InlineData(null, null, "the engine ended without reporting an exit status: it was killed (SIGKILL leaves no word) or crashed")]
    [InlineData(null, 42, "the engine (pid 42) ended without reporting an exit status: it was killed (SIGKILL leaves no word) or crashed")]
    public void AnEngineEndWithoutAReason_IsStillDescribed(int? code, int? pid, string words)
    {
        Assert.Equal(words, EngineHost.HowItEnded(new VmStatus(VmState.Off, pid, ExitCode: code)));
    }

    [Theory]
    [InlineData("""{"ok":true,"resetsBefore":2}""", 2)]
    [InlineData("""{"ok":true,"resets":2}""", null)]
    [InlineData("""{"ok":true,"resetsBefore":"2"}""", null)]
    public void ResetsBefore_IsReadOnlyFromANumber(string reply, int? expected)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(reply);
        Assert.Equal(expected, EngineHost.ResetsBefore(doc.RootElement));
    }
}
