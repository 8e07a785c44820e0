using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xunit.Abstractions;

namespace Xhyve.Engine.Tests.Control;

/// <summary>
/// Signals at any moment of an engine's life (docs/xhyve-command-line.md, Signals): whatever arrives and whenever,
/// the engine ends by its own exit path with its exit file written and its pid file and control socket removed,
/// never by a fault or a signal's default action.
/// </summary>
/// <remarks>
/// The engine runs as a background job of a bash that the test feeds lines of signal names; bash sends them with
/// its kill builtin (microseconds apart within a line). Only that bash can reap the engine, so its pid cannot be
/// reused by another process while signals are still being sent (pid_max is small on some hosts, and these tests
/// often run as root). `set -m` keeps SIGINT and SIGQUIT deliverable: without job control POSIX starts a
/// background job with both ignored. A test run started under nohup (as CI may be) passes SIGHUP down ignored, and
/// the engine honours an ignored SIGHUP as nohup asks; no shell can undo an ignore it inherited, so env(1) starts
/// the engine with SIGHUP at its default, as from a terminal. The same goes for SIGINT and SIGQUIT when the test run
/// itself was started as a background job (ignored from then on): with job control they are reset too, and
/// without it they stay ignored, as the shell's background job has them.
/// </remarks>
public sealed class SignalTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-sig").FullName;   // created 0700
    private string ExitFile => Path.Combine(_dir, "exit.json");
    private string PidFile => Path.Combine(_dir, "engine.pid");
    private string Socket => Path.Combine(_dir, "ctl.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    private const string Driver = """
        defaults=HUP
        [ "$1" = jobs ] && set -m && defaults=HUP,INT,QUIT
        shift
        env --default-signal=$defaults "$0" "$@" </dev/null &
        p=$!
        while read -r line; do
            for s in $line; do kill "-$s" "$p" 2>/dev/null; done
            echo "sent $line"
        done
        wait "$p"
        echo "xhyve-exit=$?"
        """;

    /// <summary>An engine running the hello guest (spinning after "ready") with an exit file, a pid file and a
    /// control socket, under a bash that signals it.</summary>
    private RunningEngine Start(bool jobControl = true, int vcpus = 2)
    {
        var psi = new ProcessStartInfo("bash")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false, StandardOutputEncoding = Encoding.Latin1,
        };
        foreach (var a in (string[])["-c", Driver, EngineProcess.Executable, jobControl ? "jobs" : "nojobs",
                 "-c", vcpus.ToString(), "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
                 "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1",
                 "--exit-file", ExitFile, "-F", PidFile, "--control-socket", Socket])
            psi.ArgumentList.Add(a);
        return new RunningEngine(Process.Start(psi)!);
    }

    private static void Send(RunningEngine p, params string[] signals)
    {
        p.StandardInput.WriteLine(string.Join(' ', signals));
        p.StandardInput.Flush();
    }

    /// <summary>Waits for the engine's pid file: from then on the engine answers every signal itself.</summary>
    private void WaitForPidFile(RunningEngine p)
    {
        var sw = Stopwatch.StartNew();
        while (!File.Exists(PidFile))
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30) && !p.HasExited, $"no pid file; output so far:\n{p.Output}");
            Thread.Sleep(2);
        }
    }

    /// <summary>Ends the script (closing its input after a last SIGTERM) and returns the engine's exit status
    /// as bash saw it (128 + n when a signal killed it).</summary>
    private int Finish(RunningEngine p, bool term = true)
    {
        if (term) Send(p, "TERM");
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(30_000), $"the engine did not end; output:\n{p.Output}\n{Processes(p.Id)}");
        Assert.True(p.WaitForOutput(TimeSpan.FromSeconds(10)));
        var m = Regex.Match(p.Output, @"xhyve-exit=(\d+)");
        Assert.True(m.Success, $"no exit status; output:\n{p.Output}\nstderr:\n{p.Stderr}");
        return int.Parse(m.Groups[1].Value);
    }

    /// <summary>For a test that failed waiting: the driver's children (the engine) with their state, threads and what they
    /// wait in, and whether the exit file was written.</summary>
    private string Processes(int bash)
    {
        var ps = EngineProcess.RunProgram("ps", ["-L", "-o", "pid,lwp,stat,wchan:32,comm", "--ppid", bash.ToString()], 10);
        return $"processes under the driver:\n{ps.Stdout}exit file: {(File.Exists(ExitFile) ? File.ReadAllText(ExitFile) : "none")}";
    }

    /// <summary>What every way of ending must leave: status 0, the exit file (valid JSON, the same status), no pid
    /// file, no socket, and no sign of a crash on stderr.</summary>
    private JsonElement AssertCleanExit(RunningEngine p, int status, string context)
    {
        string stderr = p.Stderr;
        string detail = $"{context}\nstatus {status}\nstderr:\n{stderr}";
        Assert.True(status == 0, $"the engine did not exit cleanly: {detail}");
        Assert.DoesNotContain("Unhandled exception", stderr);
        Assert.DoesNotContain("AccessViolation", stderr);
        Assert.True(File.Exists(ExitFile), $"no exit file: {detail}");
        var exit = JsonDocument.Parse(File.ReadAllText(ExitFile)).RootElement.Clone();
        Assert.Equal(0, exit.GetProperty("exitCode").GetInt32());
        Assert.False(File.Exists(PidFile), $"the pid file stayed: {detail}");
        Assert.False(File.Exists(Socket), $"the control socket stayed: {detail}");
        return exit;
    }

    private string State()
    {
        using var s = new System.Net.Sockets.Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(Socket));
        s.Send("state\n"u8);
        var line = new List<byte>();
        var one = new byte[1];
        s.ReceiveTimeout = 20_000;
        while (s.Receive(one) == 1 && one[0] != '\n') line.Add(one[0]);
        return JsonDocument.Parse(line.ToArray()).RootElement.GetProperty("state").GetString()!;
    }

    private void WaitForSocket(RunningEngine p)
    {
        var sw = Stopwatch.StartNew();
        while (!File.Exists(Socket))
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30) && !p.HasExited, $"no socket; output so far:\n{p.Output}");
            Thread.Sleep(5);
        }
    }

    [SkippableFact]
    public void PauseAndResumeSignals_AfterSigterm_NeverCrashTheEngine_AndItStillCleansUp()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = Start();
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        // Kicks keep arriving while the vCPUs end and the machine is torn down.
        Send(p, "TERM");
        for (int i = 0; i < 300; i++) Send(p, "USR1", "USR2", "USR1");
        AssertCleanExit(p, Finish(p), "SIGTERM then 900 SIGUSR1/SIGUSR2");
    }

    [SkippableTheory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public void SecondStopSignal_DuringShutdown_StillWritesTheExitFile_AndRemovesPidFileAndSocket(string second)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = Start();
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        Send(p, "TERM");
        for (int i = 0; i < 300; i++) Send(p, second, second);
        AssertCleanExit(p, Finish(p), $"SIGTERM then 600 SIG{second}");
    }

    [SkippableTheory]
    [InlineData("HUP")]
    [InlineData("QUIT")]
    public void SighupAndSigquit_StopTheVmLikeSigterm_WithExitFileAndCleanup(string signal)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = Start();
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        Send(p, signal);
        var exit = AssertCleanExit(p, Finish(p, term: false), $"SIG{signal}");
        Assert.Equal($"turned off (SIG{signal})", exit.GetProperty("reason").GetString());
    }

    [SkippableFact]
    public void PauseAndResume_SentWhileTheVmIsBuilt_AreKeptAndAppliedInArrivalOrder()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = Start();
        WaitForPidFile(p);
        // Apart by a few milliseconds, so the kernel delivers each before the next is sent (pending standard
        // signals are merged and delivered lowest number first).
        foreach (var s in (string[])["USR1", "USR2", "USR1", "USR2", "USR1"]) { Send(p, s); Thread.Sleep(20); }
        WaitForSocket(p);
        Assert.Equal("Paused", WaitForState("Paused"));
        foreach (var s in (string[])["USR2", "USR1", "USR2"]) { Send(p, s); Thread.Sleep(20); }
        Assert.Equal("Running", WaitForState("Running"));
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));   // and the guest really runs
        AssertCleanExit(p, Finish(p), "pause/resume during the build, then SIGTERM");
    }

    /// <summary>The state once the signals sent so far are applied (they are queued: allow a moment).</summary>
    private string WaitForState(string expected)
    {
        string state = State();
        for (int i = 0; i < 50 && state != expected; i++) { Thread.Sleep(20); state = State(); }
        return state;
    }

    [SkippableTheory]
    [InlineData("INT")]
    [InlineData("QUIT")]
    public void SigintAndSigquit_AreIgnoredByAnEngineTheShellStartedInTheBackground_SigtermStillStopsIt(string signal)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = Start(jobControl: false);   // `xhyve ... &` in a script: POSIX ignores SIGINT and SIGQUIT for it
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        Send(p, signal);
        p.ReadUntil($"sent {signal}", TimeSpan.FromSeconds(10));
        Thread.Sleep(500);
        Assert.Equal("Running", State());
        AssertCleanExit(p, Finish(p), $"SIG{signal} (ignored), then SIGTERM");
    }

    private static readonly string[] StressSignals = ["TERM", "INT", "HUP", "USR1", "USR2", "USR1", "USR2"];

    /// <summary>
    /// Random bursts of TERM, INT, HUP, USR1 and USR2 at random times, from the moment the pid file exists (the VM
    /// still being built) or from a running guest; every round must end cleanly. The seed is printed: set
    /// XHYVE_SIGNAL_SEED to replay a failure, XHYVE_SIGNAL_ROUNDS for more rounds.
    /// </summary>
    [SkippableFact]
    public void RandomSignalBursts_OverARunningGuest_AlwaysEndCleanly_WithExitFilePidFileAndSocketHandled()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        int seed = int.TryParse(Environment.GetEnvironmentVariable("XHYVE_SIGNAL_SEED"), out int s) ? s : 20261130;
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("XHYVE_SIGNAL_ROUNDS"), out int r) ? r : 30;
        output.WriteLine($"signal stress: seed {seed}, {rounds} rounds (XHYVE_SIGNAL_SEED={seed} replays)");
        var random = new Random(seed);
        var total = Stopwatch.StartNew();
        int sent = 0;
        for (int round = 0; round < rounds; round++)
        {
            foreach (var f in (string[])[ExitFile, PidFile]) File.Delete(f);
            bool early = random.Next(4) == 0;
            var schedule = new List<(int DelayMs, string[] Signals)>();
            for (int b = random.Next(1, 5); b > 0; b--)
                schedule.Add((random.Next(0, 40), Enumerable.Range(0, random.Next(1, 6)).Select(_ => StressSignals[random.Next(StressSignals.Length)]).ToArray()));
            string context = $"seed {seed}, round {round}, {(early ? "during the build" : "after ready")}: " +
                string.Join(" | ", schedule.Select(x => $"+{x.DelayMs}ms {string.Join(' ', x.Signals)}"));
            using var p = Start(vcpus: 1 + random.Next(3));
            if (early) WaitForPidFile(p);
            else p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
            foreach (var (delay, signals) in schedule)
            {
                Thread.Sleep(delay);
                Send(p, signals);
                sent += signals.Length;
            }
            // A last SIGTERM ends rounds that sent only pauses and resumes (a paused VM stops too).
            AssertCleanExit(p, Finish(p), context);
        }
        output.WriteLine($"signal stress: {rounds} rounds, {sent} signals, {total.Elapsed.TotalSeconds:F1} s");
    }
}
