using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Config;

namespace Xhyve.Engine.Tests.Control;

/// <summary>The engine's control API (docs/control-api.md) against real engines running test guests.</summary>
public sealed class ControlApiTests() : ControlledEngineTest("xhyve-ctl")
{
    [SkippableFact]
    public void Socket_IsOwnerOnly_InAnOwnerOnlyFolder_AndIsRemovedWhenTheEngineEnds()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("power", "button=1");
        using (var c = new ControlTestClient(Socket)) Assert.True(c.Ask("state").GetProperty("ok").GetBoolean());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Socket));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir));
        using (var c = new ControlTestClient(Socket)) c.Ask("stop");
        Assert.True(p.WaitForExit(10_000));
        Assert.False(File.Exists(Socket));
    }

    [SkippableFact]
    public void State_PauseResume_Counters_AndConfig_AnswerAsDocumented()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = Path.Combine(_dir, "d.img");
        File.WriteAllBytes(disk, new byte[1 << 20]);
        using var p = StartGuest("power", "button=1", "-c", "2", "-m", "128M", "-s", $"4,virtio-blk,{disk}", "--name=ctltest");
        EngineProcess.ReadUntil(p, "XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        using var c = new ControlTestClient(Socket);
        var state = c.Ask("state");
        Assert.Equal("Running", state.GetProperty("state").GetString());
        Assert.Equal(2, state.GetProperty("vcpus").GetInt32());
        Assert.Equal(128L << 20, state.GetProperty("memoryBytes").GetInt64());
        Assert.Equal("ctltest", state.GetProperty("name").GetString());
        Assert.Equal(p.Id, state.GetProperty("pid").GetInt32());
        Assert.True(state.GetProperty("uptimeSeconds").GetDouble() > 0);
        Assert.Equal("Paused", c.Ask("pause").GetProperty("state").GetString());
        Assert.Equal("Paused", c.Ask("state").GetProperty("state").GetString());
        Assert.Equal("Running", c.Ask("resume").GetProperty("state").GetString());

        var device = Assert.Single(c.Ask("counters").GetProperty("devices").EnumerateArray());
        Assert.StartsWith("virtio-blk", device.GetProperty("device").GetString());
        Assert.True(device.TryGetProperty("reads", out _));

        // The effective configuration is an xhyve command line for the same VM, with the UUID the guest sees.
        var arguments = c.Ask("config").GetProperty("arguments").EnumerateArray().Select(a => a.GetString()!).ToList();
        var spec = CommandLineParser.Parse(arguments).Spec;
        Assert.Equal((2, 128UL << 20, "ctltest", true), (spec.Vcpus, spec.MemoryBytes, spec.Name, spec.Acpi));
        Assert.Equal(Guid.Parse(state.GetProperty("uuid").GetString()!), spec.Uuid);
        Assert.Contains(spec.PciDevices, d => d.Emulation == "virtio-blk" && d.Options == disk);
        c.Ask("stop");
        Assert.True(p.WaitForExit(10_000));
    }

    [SkippableFact]
    public void PowerButton_ShutsTheGuestDown_AndTheExitFileSaysPoweredOff()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("power", "button=1");
        EngineProcess.ReadUntil(p, "XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        using (var c = new ControlTestClient(Socket)) Assert.True(c.Ask("powerbutton").GetProperty("ok").GetBoolean());
        EngineProcess.ReadUntil(p, "XHYVE-TEST s5=1", TimeSpan.FromSeconds(10));
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal(0, p.ExitCode);
        var exit = ReadExitFile();
        Assert.Equal(0, exit.GetProperty("exitCode").GetInt32());
        Assert.Equal("PoweredOff", exit.GetProperty("status").GetString());
    }

    [SkippableFact]
    public void PowerButton_BeforeTheGuestListens_IsAnError_AndStopTurnsTheVmOff()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("hello", "spin=1");
        EngineProcess.ReadUntil(p, "ready", TimeSpan.FromSeconds(30));
        using var c = new ControlTestClient(Socket);
        var refused = c.Ask("powerbutton");
        Assert.False(refused.GetProperty("ok").GetBoolean());
        Assert.Contains("power-button event", refused.GetProperty("error").GetString());
        Assert.Equal("Stopping", c.Ask("stop").GetProperty("state").GetString());
        Assert.True(p.WaitForExit(10_000));
        var exit = ReadExitFile();
        Assert.Equal(0, exit.GetProperty("exitCode").GetInt32());
        Assert.Contains("control API", exit.GetProperty("reason").GetString());
    }

    [SkippableFact]
    public void Console_StreamsGuestOutput_AndDeliversWhatTheClientTypes()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("hello", "echo=5");
        using var c = new ControlTestClient(Socket);
        var reply = JsonDocument.Parse(c.ReadLineAfter("console history")).RootElement;
        Assert.Equal("com1", reply.GetProperty("console").GetString());
        Assert.Contains("XHYVE-TEST echo_ready=5", c.ReadUntil("echo_ready=5"));
        c.Send("hello");
        Assert.Contains("XHYVE-TEST echo=hello", c.ReadUntil("echo=hello"));
        p.WaitForExit(10_000);
    }

    [Theory]
    [InlineData("bogus", "unknown command 'bogus'")]
    [InlineData("state now", "'state' takes no arguments")]
    [InlineData("console everything", "usage: console [history]")]
    public void BadCommands_GetAnErrorNamingThem(string command, string error)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("hello", "spin=1");
        using var c = new ControlTestClient(Socket);
        var reply = c.Ask(command);
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Contains(error, reply.GetProperty("error").GetString());
        Assert.True(c.Ask("state").GetProperty("ok").GetBoolean(), "the connection stays usable");
        c.Ask("stop");
        p.WaitForExit(10_000);
    }

    [Fact]
    public void AFolderOtherUsersCanEnter_IsRefused_AndNothingIsCreated()
    {
        File.SetUnixFileMode(_dir, (UnixFileMode)0b111_101_101);
        var run = EngineProcess.Run(["-f", $"multiboot,{EngineProcess.Guest("hello")}", "--control-socket", Socket, "--exit-file", ExitFile]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"the folder {_dir} can be entered by other users (mode 755)", run.Stderr);
        Assert.False(File.Exists(Socket));
        Assert.Contains("other users", ReadExitFile().GetProperty("reason").GetString());
    }

    [SkippableFact]
    public void AnotherUser_CannotConnect()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(Environment.UserName == "root", "creating a second user needs root; this test runs as " + Environment.UserName);
        const string user = "xhyve-ctl-test";
        if (EngineProcess.RunProgram("id", [user], 10).ExitCode != 0)
            Assert.Equal(0, EngineProcess.RunProgram("useradd", ["--system", "--no-create-home", user], 30).ExitCode);
        using var p = StartGuest("hello", "spin=1");
        using (var c = new ControlTestClient(Socket)) Assert.True(c.Ask("state").GetProperty("ok").GetBoolean());
        // The other user runs the same client; the kernel refuses the connection before the engine sees it.
        var other = EngineProcess.RunProgram("setpriv", ["--reuid", user, "--regid", user, "--clear-groups", "--",
            EngineProcess.Executable, "ctl", Socket, "state"], 30);
        Assert.Equal(1, other.ExitCode);
        Assert.Contains("Permission denied", other.Stderr);
        using (var c = new ControlTestClient(Socket)) c.Ask("stop");
        p.WaitForExit(10_000);
    }
}
