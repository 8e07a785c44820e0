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
/// runner started by hand, so the test holds the window open.
/// </summary>
public sealed class ControlStateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-state").FullName;   // created 0700
    private string Socket => Path.Combine(_dir, "ctl.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    private static JsonElement Ask(string path, string command)
    {
        using var s = new System.Net.Sockets.Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        s.ReceiveTimeout = 10_000;
        s.Send(Encoding.UTF8.GetBytes(command + "\n"));
        var line = new List<byte>();
        var one = new byte[1];
        while (s.Receive(one) == 1 && one[0] != '\n') line.Add(one[0]);
        return JsonDocument.Parse(line.ToArray()).RootElement.Clone();
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
}
