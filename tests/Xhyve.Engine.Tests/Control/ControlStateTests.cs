using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xhyve.Engine.Control;
using Xhyve.Engine.Runtime;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Engine.Tests.Control;

/// <summary>
/// The "state" reply in the window the engine has that a client can hit but a test of the whole process cannot
/// aim at: the socket is served before the runner starts the vCPUs. The machine is built in this process and the
/// runner started (or stopped) by hand, so the test holds the window open. Also "wait-running"
/// (docs/control-api.md): one reply, once the BSP has entered the guest.
/// </summary>
public sealed class ControlStateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-state").FullName;   // created 0700
    private string Socket => Path.Combine(_dir, "ctl.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    private static System.Net.Sockets.Socket Connect(string path)
    {
        var s = new System.Net.Sockets.Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        s.ReceiveTimeout = 30_000;
        return s;
    }

    private static JsonElement ReadReply(System.Net.Sockets.Socket s)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (s.Receive(one) == 1 && one[0] != '\n') line.Add(one[0]);
        return JsonDocument.Parse(line.ToArray()).RootElement.Clone();
    }

    private static JsonElement Ask(string path, string command)
    {
        using var s = Connect(path);
        s.Send(Encoding.UTF8.GetBytes(command + "\n"));
        return ReadReply(s);
    }

    /// <summary>A connection that has sent <paramref name="command"/> and had no reply within <paramref name="heldMs"/>.</summary>
    private static System.Net.Sockets.Socket Held(string path, string command, int heldMs)
    {
        var s = Connect(path);
        s.Send(Encoding.UTF8.GetBytes(command + "\n"));
        Assert.False(ReplyWithin(s, heldMs), $"'{command}' replied before anything happened");
        return s;
    }

    [SkippableFact]
    public void State_BeforeTheRunnerHasStarted_IsStarting_WithNoStartTimeAndZeroUptime()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var spec = CommandLineParser.Parse(["-s", "0,hostbridge", "-s", "31,lpc",
            "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1", "--name=early"]).Spec;
        using var hypervisor = KvmHypervisor.Open();
        var runner = new VmRunner(spec.VcpuPinning);
        using var machine = new VmBuilder(spec, hypervisor, runner).Build();
        using var server = ControlServer.Start(Socket, machine, runner, spec);

        var early = Ask(Socket, "state");
        Assert.True(early.GetProperty("ok").GetBoolean());
        Assert.Equal("Starting", early.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, early.GetProperty("startedUtc").ValueKind);
        Assert.Equal(0, early.GetProperty("uptimeSeconds").GetDouble());

        runner.Start(machine);
        try
        {
            // Running once the BSP has entered the guest, which is a moment after Start: wait-running waits for it.
            var running = Ask(Socket, "wait-running timeout_ms=30000");
            Assert.Equal("Running", running.GetProperty("state").GetString());
            double uptime = running.GetProperty("uptimeSeconds").GetDouble();
            Assert.InRange(uptime, 0, 60);
            Assert.InRange(running.GetProperty("startedUtc").GetDateTime(), DateTime.UtcNow.AddMinutes(-1), DateTime.UtcNow);
        }
        finally
        {
            runner.RequestStop(VmExitStatus.PoweredOff, "test over");
            runner.WaitForExit();
        }
    }

    /// <summary>A built machine (the hello guest, spinning) served on the socket, its runner not started.</summary>
    private sealed class Served : IDisposable
    {
        public readonly KvmHypervisor Hypervisor = KvmHypervisor.Open();
        public readonly VmRunner Runner;
        public readonly Machine Machine;
        public readonly ControlServer Server;
        /// <summary>The engine's life, as Program drives it: the test ends it as the engine does.</summary>
        public readonly EngineLifecycle Lifecycle = new(OnReset.Exit);

        public Served(string socket)
        {
            var spec = CommandLineParser.Parse(["-s", "0,hostbridge", "-s", "31,lpc",
                "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1", "--name=waiting"]).Spec;
            Runner = new VmRunner(spec.VcpuPinning);
            Machine = new VmBuilder(spec, Hypervisor, Runner).Build();
            Lifecycle.Attach(Machine, Runner);
            Server = ControlServer.Start(socket, Lifecycle, new EngineConfiguration(spec, Lifecycle));
        }

        public void Dispose()
        {
            Runner.RequestStop(VmExitStatus.PoweredOff, "test over");
            Runner.WaitForExit();
            Server.Dispose();
            Machine.Dispose();
            Hypervisor.Dispose();
        }
    }

    /// <summary>Whether a reply byte arrived within <paramref name="ms"/>: the proof that the engine still holds it.</summary>
    private static bool ReplyWithin(System.Net.Sockets.Socket s, int ms) => s.Poll(ms * 1000, SelectMode.SelectRead);

    [SkippableFact]
    public void WaitRunning_HoldsItsReplyWhileTheVcpusHaveNotEnteredTheGuest_AndRepliesRunningOnceTheyHave()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var vm = new Served(Socket);
        // Paused before the start: the vCPU threads exist but the BSP waits before its first KVM_RUN.
        Assert.True(Ask(Socket, "pause").GetProperty("ok").GetBoolean());
        vm.Runner.Start(vm.Machine);

        using var waiter = Held(Socket, "wait-running timeout_ms=60000", 500);   // the BSP has not entered the guest
        // Nor does "state" say Running: the threads run, the guest does not yet (Paused, with no start time).
        var held = Ask(Socket, "state");
        Assert.Equal("Paused", held.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, held.GetProperty("startedUtc").ValueKind);

        var resumedAt = DateTime.UtcNow;
        Ask(Socket, "resume");
        var reply = ReadReply(waiter);
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal("Running", reply.GetProperty("state").GetString());
        Assert.InRange(reply.GetProperty("startedUtc").GetDateTime(), resumedAt.AddSeconds(-1), DateTime.UtcNow);
    }

    [SkippableFact]
    public void WaitRunning_WhenTheVmStopsBeforeItRan_RepliesAnErrorWithTheReason()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var vm = new Served(Socket);
        using var waiter = Held(Socket, "wait-running", 300);

        vm.Runner.RequestStop(VmExitStatus.Error, "the test failed the machine");
        var reply = ReadReply(waiter);
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal("the VM is stopping and will not run: the test failed the machine", reply.GetProperty("error").GetString());
    }

    [SkippableFact]
    public void WaitRunning_WhenTheEngineEndsBeforeTheVmRan_RepliesAnErrorWithTheEnginesReason()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var vm = new Served(Socket);
        using var waiter = Held(Socket, "wait-running", 300);

        // What Program does when a rebuild fails, before it closes the socket.
        vm.Lifecycle.Close("the machine could not be built again: out of memory");
        var reply = ReadReply(waiter);
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal("the VM is stopping and will not run: the machine could not be built again: out of memory", reply.GetProperty("error").GetString());
    }

    [SkippableFact]
    public void WaitRunning_ThatTimesOut_SaysSo_WithTheStateTheVmIsIn_AndTheConnectionStaysUsable()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var vm = new Served(Socket);
        using var s = Connect(Socket);
        s.Send("wait-running timeout_ms=200\n"u8.ToArray());
        var reply = ReadReply(s);
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Equal("the VM is not running after 200 ms (it is Starting)", reply.GetProperty("error").GetString());
        s.Send("state\n"u8.ToArray());
        Assert.True(ReadReply(s).GetProperty("ok").GetBoolean());
    }

    [SkippableFact]
    public void WaitRunning_ForAVmThatRuns_RepliesAtOnce_AsState()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var vm = new Served(Socket);
        vm.Runner.Start(vm.Machine);
        var first = Ask(Socket, "wait-running");
        Assert.Equal("Running", first.GetProperty("state").GetString());
        var again = Ask(Socket, "wait-running timeout_ms=1");
        Assert.Equal("Running", again.GetProperty("state").GetString());
        Assert.Equal(first.GetProperty("startedUtc").GetDateTime(), again.GetProperty("startedUtc").GetDateTime());
    }

    [Theory]
    [InlineData("wait-running", null, null)]
    [InlineData("wait-running timeout_ms=1", 1, null)]
    [InlineData("wait-running timeout_ms=86400000", 86_400_000, null)]
    [InlineData("wait-running timeout_ms=0", null, "'wait-running': timeout_ms '0' is not a number of milliseconds from 1 to 86400000")]
    [InlineData("wait-running timeout_ms=86400001", null, "'wait-running': timeout_ms '86400001' is not a number of milliseconds from 1 to 86400000")]
    [InlineData("wait-running timeout_ms=-5", null, "'wait-running': timeout_ms '-5' is not a number of milliseconds from 1 to 86400000")]
    [InlineData("wait-running timeout_ms=", null, "'wait-running': timeout_ms '' is not a number of milliseconds from 1 to 86400000")]
    [InlineData("wait-running 500", null, "'wait-running': unknown argument '500': usage: wait-running [timeout_ms=N] (N: milliseconds, 1 to 86400000)")]
    [InlineData("wait-running timeout_ms=1 timeout_ms=2", null, "'wait-running' takes one argument at most: usage: wait-running [timeout_ms=N] (N: milliseconds, 1 to 86400000)")]
    public void WaitRunning_Arguments_AreParsed_OrRefusedNamingTheBadOne(string line, int? timeoutMs, string? error)
    {
        var request = ControlProtocol.Parse(line)!;
        Assert.Equal("wait-running", request.Command);
        Assert.Equal(error, request.Error);
        Assert.Equal(timeoutMs, request.TimeoutMs);
    }
}
