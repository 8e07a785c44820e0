using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Control;

/// <summary>
/// `xhyve ctl` (docs/control-api.md, "xhyve ctl") against a fake engine in the test: one command per call, a
/// bounded wait, and one-line errors naming the socket. No guest is needed, so these run without KVM.
/// </summary>
public sealed class CtlClientTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-ctlclient").FullName;   // created 0700
    private string SocketPath => Path.Combine(_dir, "ctl.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A control socket that accepts connections and either answers every line with {"ok":true} or
    /// never answers (an engine stopped with SIGSTOP, or wedged); with <c>vmNeverRuns</c> it answers
    /// "wait-running timeout_ms=N" as an engine whose VM does not run does, with "ok": false once N ms have passed.
    /// It records the lines it received.</summary>
    private sealed class FakeEngine : IDisposable
    {
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private readonly List<Socket> _clients = [];
        private readonly StringBuilder _received = new();

        private readonly bool _vmNeverRuns;

        public FakeEngine(string path, bool answers, bool vmNeverRuns = false)
        {
            _vmNeverRuns = vmNeverRuns;
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(8);
            _ = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var client = await _listener.AcceptAsync();
                        lock (_clients) _clients.Add(client);
                        _ = Serve(client, answers);
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            });
        }

        private async Task Serve(Socket client, bool answers)
        {
            var buffer = new byte[4096];
            try
            {
                int n;
                while ((n = await client.ReceiveAsync(buffer)) > 0)
                {
                    string text = Encoding.UTF8.GetString(buffer, 0, n);
                    lock (_received) _received.Append(text);
                    if (_vmNeverRuns && text.StartsWith("wait-running timeout_ms=", StringComparison.Ordinal))
                    {
                        int ms = int.Parse(text["wait-running timeout_ms=".Length..].TrimEnd('\n'));
                        await Task.Delay(ms);
                        await client.SendAsync(Encoding.UTF8.GetBytes($"{{\"ok\":false,\"error\":\"not running after {ms} ms\"}}\n"));
                    }
                    else if (answers) foreach (char _ in text.Where(c => c == '\n')) await client.SendAsync("{\"ok\":true}\n"u8.ToArray());
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        }

        public string Received { get { lock (_received) return _received.ToString(); } }

        public void Dispose()
        {
            _listener.Dispose();
            lock (_clients) foreach (var c in _clients) c.Dispose();
        }
    }

    private static EngineRun Ctl(params string[] args) => EngineProcess.Run(["ctl", .. args], timeoutSeconds: 30);

    private static void AssertOneLineError(EngineRun run, string message)
    {
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Single(run.Stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith(message, run.Stderr);
    }

    [Theory]
    [InlineData("state\nstop", "state\\nstop")]
    [InlineData("state\r\nstop", "state\\nstop")]
    [InlineData("\n", "\\n")]
    public void Ctl_ACommandWithALineBreak_IsRefusedInOneLine_AndNothingIsSent(string command, string shown)
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        var run = Ctl(SocketPath, command);
        AssertOneLineError(run, $"xhyve ctl: the command '{shown}' has a line break; give one command per call");
        Assert.Equal("", engine.Received);
    }

    [Fact]
    public void Ctl_AnEmptyCommand_IsRefusedInOneLine()
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        AssertOneLineError(Ctl(SocketPath, ""), "xhyve ctl: the command is empty (one of: state,");
        Assert.Equal("", engine.Received);
    }

    [Fact]
    public void Ctl_AnEngineThatAcceptsButNeverAnswers_FailsAfterTheDefault10Seconds_NamingTheSocket()
    {
        using var engine = new FakeEngine(SocketPath, answers: false);
        var clock = Stopwatch.StartNew();
        var run = Ctl(SocketPath, "state");
        AssertOneLineError(run, $"xhyve ctl: {SocketPath}: no reply within 10 s");
        Assert.InRange(clock.Elapsed.TotalSeconds, 9.5, 25);
        Assert.Equal("state\n", engine.Received);
    }

    [Theory]
    [InlineData("--timeout 1")]
    [InlineData("--timeout=1")]
    public void Ctl_TimeoutOption_BoundsTheWaitForTheReply(string option)
    {
        using var engine = new FakeEngine(SocketPath, answers: false);
        var clock = Stopwatch.StartNew();
        var run = Ctl([.. option.Split(' '), SocketPath, "state"]);
        AssertOneLineError(run, $"xhyve ctl: {SocketPath}: no reply within 1 s (the engine may be stopped or wedged; --timeout SECONDS waits longer)");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"took {clock.Elapsed}");
    }

    [Fact]
    public void Ctl_AnEngineWhoseConnectionQueueIsFull_FailsAfterTheTimeout_NamingTheSocket()
    {
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        listener.Listen(0);
        // Connections the engine never accepts fill its queue (non-blocking, so the test never waits on one).
        var queued = new List<Socket>();
        try
        {
            for (int i = 0; i < 4; i++)
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = false };
                queued.Add(s);
                try { s.Connect(new UnixDomainSocketEndPoint(SocketPath)); } catch (SocketException) { }
            }
            var clock = Stopwatch.StartNew();
            var run = Ctl("--timeout", "1", SocketPath, "state");
            AssertOneLineError(run, $"xhyve ctl: cannot connect to {SocketPath}: the engine did not accept within 1 s");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"took {clock.Elapsed}");
        }
        finally { foreach (var s in queued) s.Dispose(); }
    }

    [Fact]
    public void Ctl_AMissingSocket_SaysNoSuchFile_NamingThePath()
    {
        AssertOneLineError(Ctl(SocketPath, "state"),
            $"xhyve ctl: cannot connect to {SocketPath}: no such file (is the engine running with --control-socket {SocketPath}?)");
    }

    [Fact]
    public void Ctl_AFolderAsTheSocket_SaysItIsNotASocket()
    {
        AssertOneLineError(Ctl(_dir, "state"), $"xhyve ctl: cannot connect to {_dir}: is a folder, not a socket");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("1e9")]
    [InlineData("NaN")]
    public void Ctl_ATimeoutThatIsNotAPositiveNumberOfSeconds_IsRefusedInOneLine(string value)
    {
        AssertOneLineError(Ctl("--timeout", value, SocketPath, "state"),
            $"xhyve ctl: --timeout '{value}': not a number of seconds between 0 and 86400");
    }

    [Fact]
    public void Ctl_WithATimeout_PrintsTheReply_AndExits0()
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        var run = Ctl("--timeout", "5", SocketPath, "state");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("{\"ok\":true}\n", run.Stdout);
        Assert.Equal("state\n", engine.Received);
    }

    /// <summary>The timeout_ms of the one "wait-running" line the fake engine received.</summary>
    private static int SentWaitMs(string received)
    {
        var match = System.Text.RegularExpressions.Regex.Match(received, "^wait-running timeout_ms=([0-9]+)\n$");
        Assert.True(match.Success, $"received '{received}'");
        return int.Parse(match.Groups[1].Value);
    }

    [Theory]
    [InlineData(new[] { "wait-running" }, 10_000)]
    [InlineData(new[] { "--timeout", "3", "wait-running" }, 3_000)]
    public void Ctl_WaitRunning_AsksTheEngineToWaitAsLongAsCtlWaitsForTheReply(string[] args, int ms)
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        string[] command = args[0] == "--timeout" ? [args[0], args[1], SocketPath, .. args[2..]] : [SocketPath, .. args];
        var run = Ctl(command);
        Assert.True(run.ExitCode == 0, run.ToString());
        // Less the moment the connect took.
        Assert.InRange(SentWaitMs(engine.Received), ms - 2_000, ms);
    }

    [Fact]
    public void Ctl_WaitRunning_WithTimeoutMs_SendsIt()
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        var run = Ctl(SocketPath, "wait-running", "timeout_ms=250");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("wait-running timeout_ms=250\n", engine.Received);
    }

    [Fact]
    public void Ctl_WaitRunning_ThatTheEngineDoesNotAnswer_FailsAfterItsTimeoutAndASecond()
    {
        using var engine = new FakeEngine(SocketPath, answers: false);
        var run = Ctl("--timeout", "1", SocketPath, "wait-running");
        AssertOneLineError(run, $"xhyve ctl: {SocketPath}: no reply within 2 s");
    }

    [Theory]
    [InlineData("wait-running", "timeout_ms=soon")]
    [InlineData("wait-running timeout_ms=soon", null)]   // one quoted argument
    public void Ctl_WaitRunning_WithABadArgument_IsRefusedInOneLine_NamingIt_AndNothingIsSent(string command, string? argument)
    {
        using var engine = new FakeEngine(SocketPath, answers: true);
        AssertOneLineError(Ctl([SocketPath, command, .. argument is null ? Array.Empty<string>() : [argument]]),
            "xhyve ctl: 'wait-running': timeout_ms 'soon' is not a number of milliseconds from 1 to 86400000");
        Assert.Equal("", engine.Received);
    }

    /// <summary>Runs ctl with <paramref name="args"/> (after --timeout and the socket) while the socket appears only
    /// <paramref name="lateMs"/> later, as an engine just launched binds it once its machine is built.</summary>
    private async Task<(EngineRun Run, string Received)> CtlWithLateSocket(string timeout, int lateMs, bool vmNeverRuns, params string[] args)
    {
        var run = Task.Run(() => Ctl(["--timeout", timeout, SocketPath, .. args]));
        await Task.Delay(lateMs);
        using var engine = new FakeEngine(SocketPath, answers: true, vmNeverRuns);
        return (await run, engine.Received);
    }

    [Fact]
    public async Task Ctl_WaitRunning_WaitsForTheSocketOfAnEngineJustLaunched()
    {
        var (run, received) = await CtlWithLateSocket("20", 1500, false, "wait-running");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.InRange(SentWaitMs(received), 1, 20_000);   // less the time ctl waited for the socket
    }

    [Fact]
    public async Task Ctl_WaitRunning_ForASocketThatCameLate_GetsTheEnginesAnswer_BeforeItGivesUp()
    {
        // The socket appears 2.5 s into a 3 s wait for a VM that never runs: the engine is told to wait only what is
        // left, so its "not running" arrives within ctl's 4 s rather than after it (ctl said "no reply" before).
        var (run, received) = await CtlWithLateSocket("3", 2500, true, "wait-running");
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.StartsWith("{\"ok\":false,\"error\":\"not running after ", run.Stdout);
        Assert.Equal("", run.Stderr);
        Assert.InRange(SentWaitMs(received), 1, 3_000);
    }

    [Fact]
    public async Task Ctl_WaitRunning_GivenAsOneQuotedArgument_IsStillAWait_ForTheSocketToo()
    {
        var (run, received) = await CtlWithLateSocket("20", 1500, false, "wait-running timeout_ms=5000");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("wait-running timeout_ms=5000\n", received);
    }
}
