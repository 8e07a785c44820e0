using System.Text.Json;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Control;

/// <summary>Issue 13 item 2 and 5: a guest reset (or the control API's reset and reboot) builds the machine again in
/// the same engine process with --on-reset restart, and the reset-storm guard.</summary>
public sealed class ResetRestartTests() : ControlledEngineTest("xhyve-reset")
{
    private static int Count(string text, string what) => Regex.Matches(text, Regex.Escape(what)).Count;

    /// <summary>Asks "state" until <paramref name="done"/> holds (a rebuild takes a moment).</summary>
    private JsonElement WaitForState(Func<JsonElement, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var state = Ask("state");
            if (done(state)) return state;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the state never matched; last: {state}");
            Thread.Sleep(20);
        }
    }

    private JsonElement Ask(string command)
    {
        using var c = new ControlTestClient(Socket);
        return c.Ask(command).Clone();
    }

    [SkippableFact]
    public void AGuestReset_WithOnResetRestart_BuildsTheMachineAgainInTheSameProcess_AndTheConsoleGoesOn()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        // The hello guest resets once it has read one byte; the second boot waits for a byte again.
        using var p = StartGuest("hello", "echo=1", "--on-reset", "restart");
        p.ReadUntil("XHYVE-TEST echo_ready=1", TimeSpan.FromSeconds(30));
        var first = WaitForState(s => s.GetProperty("state").GetString() == "Running");
        Assert.Equal(0, first.GetProperty("resets").GetInt32());
        using (var console = new ControlTestClient(Socket))
        {
            console.ReadLineAfter("console");
            console.Send("x");
            p.ReadUntil("XHYVE-TEST echo=x", TimeSpan.FromSeconds(30));
        }
        p.ReadUntil("XHYVE-TEST echo_ready=1", TimeSpan.FromSeconds(30));
        var second = WaitForState(s => s.GetProperty("state").GetString() == "Running");
        Assert.False(p.HasExited);
        Assert.Equal(1, second.GetProperty("resets").GetInt32());
        Assert.Equal(p.Id, second.GetProperty("pid").GetInt32());
        Assert.True(second.GetProperty("startedUtc").GetDateTime() > first.GetProperty("startedUtc").GetDateTime(), "the uptime did not start again");
        Assert.Equal(2, Count(p.Output, "Hello from the XhyvePS hello guest"));

        Ask("stop");
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal(0, p.ExitCode);
        Assert.Equal(1, ReadExitFile().GetProperty("resets").GetInt32());
        Assert.False(File.Exists(Socket));
    }

    [SkippableFact]
    public void AConsoleSession_OutlivesAGuestReset_AndCarriesTheNextBootsOutputAndInput()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        // The hello guest with echo=1 echoes one byte and resets; each boot prints its banner and waits again.
        using var p = StartGuest("hello", "echo=1", "--on-reset", "restart");
        p.ReadUntil("XHYVE-TEST echo_ready=1", TimeSpan.FromSeconds(30));
        using var console = new ControlTestClient(Socket);
        Assert.Contains("\"console\":\"com1\"", console.ReadLineAfter("console"));
        console.Send("x");
        // Without history the session starts after the first banner: this one is the second boot's.
        var seen = console.ReadUntil("Hello from the XhyvePS hello guest");
        Assert.True(seen.EndsWith("Hello from the XhyvePS hello guest", StringComparison.Ordinal), $"the session ended at the reset; it saw: {seen}");
        Assert.Contains("XHYVE-TEST echo=x", seen);
        Assert.Contains("XHYVE-TEST echo_ready=1", console.ReadUntil("XHYVE-TEST echo_ready=1"));
        // Keystrokes reach the new machine.
        console.Send("y");
        Assert.Contains("XHYVE-TEST echo=y", console.ReadUntil("XHYVE-TEST echo=y"));
        Ask("stop");
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal(0, p.ExitCode);
    }

    [SkippableFact]
    public void AGuestReset_WithoutOnReset_StillEndsTheEngineWithStatus2()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("power", "reset=1");
        Assert.True(p.WaitForExit(30_000));
        Assert.True(p.WaitForOutput(TimeSpan.FromSeconds(5)));   // the native engine exits before the reader has its last line
        Assert.Equal(2, p.ExitCode);
        Assert.Equal(0, ReadExitFile().GetProperty("resets").GetInt32());
        Assert.Equal(1, Count(p.Output, "XHYVE-TEST reset=1"));
    }

    [SkippableFact]
    public void AGuestThatResetsAtOnce_InALoop_EndsTheEngineWithStatus2_NamingTheResetStorm()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("power", "reset=1", "--on-reset=restart");
        Assert.True(p.WaitForExit(60_000), "the engine restarts a guest that resets at once for ever");
        Assert.True(p.WaitForOutput(TimeSpan.FromSeconds(5)));
        Assert.Equal(2, p.ExitCode);
        var exit = ReadExitFile();
        Assert.Contains("reset storm", exit.GetProperty("reason").GetString());
        Assert.Equal(Runtime.EngineLifecycle.StormLimit - 1, exit.GetProperty("resets").GetInt32());
        Assert.Equal(Runtime.EngineLifecycle.StormLimit, Count(p.Output, "XHYVE-TEST reset=1"));
        Assert.Contains("reset storm", p.Stderr);
    }

    [SkippableFact]
    public void Stop_WhileTheMachineIsBuiltAgain_EndsTheEngine_InsteadOfBeingLost()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        // A guest that resets at once spends most of its time between machines once the storm back-off begins.
        using var p = StartGuest("power", "reset=1", "--on-reset", "restart");
        WaitForState(s => s.GetProperty("resets").GetInt32() >= Runtime.EngineLifecycle.FreeFastResets + 1);
        var reply = Ask("stop");
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal("Stopping", reply.GetProperty("state").GetString());
        Assert.True(p.WaitForExit(10_000), "the engine went on restarting the machine after 'stop'");
        Assert.Equal(0, p.ExitCode);
        Assert.Equal("turned off through the control API", ReadExitFile().GetProperty("reason").GetString());
    }

    [SkippableFact]
    public void TheResetCommand_ResetsTheMachineInPlace_EvenWithoutOnReset()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("hello", "spin=1");
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var reply = Ask("reset");
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        // The count before this reset, whatever `resets` says by the time the reply is written.
        Assert.Equal(0, reply.GetProperty("resetsBefore").GetInt32());
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var state = WaitForState(s => s.GetProperty("state").GetString() == "Running");
        Assert.Equal((1, p.Id), (state.GetProperty("resets").GetInt32(), state.GetProperty("pid").GetInt32()));
        Ask("stop");
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal(0, p.ExitCode);
    }

    [SkippableFact]
    public void TheRebootCommand_ShutsTheGuestDownThroughThePowerButton_AndStartsItAgain()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("power", "button=1");
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var reply = Ask("reboot");
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal(0, reply.GetProperty("resetsBefore").GetInt32());
        p.ReadUntil("XHYVE-TEST s5=1", TimeSpan.FromSeconds(30));   // the guest's own shutdown
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));  // and its next boot
        var state = WaitForState(s => s.GetProperty("state").GetString() == "Running");
        Assert.Equal((1, p.Id), (state.GetProperty("resets").GetInt32(), state.GetProperty("pid").GetInt32()));
        // A plain power button afterwards shuts it down for good.
        Assert.True(Ask("powerbutton").GetProperty("ok").GetBoolean());
        Assert.True(p.WaitForExit(30_000));
        Assert.Equal(0, p.ExitCode);
    }

    [SkippableFact]
    public void TheRebootCommand_IsRefused_WhenNoGuestListensToThePowerButton()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartGuest("hello", "spin=1");
        p.ReadUntil("XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var reply = Ask("reboot");
        Assert.False(reply.GetProperty("ok").GetBoolean());
        Assert.Contains("power-button event", reply.GetProperty("error").GetString());
        Assert.Contains("'reset'", reply.GetProperty("error").GetString());
        Assert.Equal("Running", Ask("state").GetProperty("state").GetString());
    }

    [Theory]
    [InlineData("--on-reset=sometimes", "--on-reset: 'sometimes' is not a choice (exit or restart)")]
    [InlineData("--on-reset", "--on-reset: missing value (exit or restart)")]
    public void ABadOnReset_IsRefusedNamingIt(string arg, string message)
    {
        var run = EngineProcess.Run(["-f", "kexec,/nonexistent", arg]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Stderr);
    }

    [Fact]
    public void Help_DescribesOnReset()
    {
        var run = EngineProcess.Run(["-h"]);
        Assert.Contains("--on-reset=exit|restart", run.Stdout);
    }

    [Fact]
    public void OnReset_IsTakenOut_ButAnotherOptionsValueThatLooksLikeItIsLeft()
    {
        var (rest, onReset) = Program.TakeOnReset(["--name", "--on-reset", "--on-reset", "restart", "-c", "1"]);
        Assert.Equal(Runtime.OnReset.Restart, onReset);
        Assert.Equal(["--name", "--on-reset", "-c", "1"], rest);
    }
}
