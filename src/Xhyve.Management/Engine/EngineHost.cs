using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

using Xhyve.Vmm.Native;

namespace Xhyve.Management.Engine;

/// <summary>What a VM is doing, as its engine host (or the lack of one) shows it.</summary>
public enum VmState { Off, Starting, Running, Paused, Stopping }

/// <summary>
/// A VM's runtime status. For a VM that is off, <see cref="ExitCode"/> and <see cref="ExitReason"/> tell how its
/// last run ended. <see cref="EngineDied"/> means the engine vanished without reporting (killed, or crashed);
/// <see cref="LastConsoleLines"/> then shows what the guest printed last.
/// </summary>
public sealed record VmStatus(VmState State, int? ProcessId = null, TimeSpan? Uptime = null, int? ExitCode = null, string? ExitReason = null,
    bool EngineDied = false, IReadOnlyList<string>? LastConsoleLines = null);

/// <summary>
/// Runs VMs in engine hosts: one detached `xhyve` process per VM (its own session, so closing the shell
/// that started it does not stop it), with its console log, pid file, control socket and exit file in the
/// VM's folder. Everything after the start goes through the control socket.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]   // /proc, setsid and Unix sockets
public sealed class EngineHost(VmStore store, string? enginePath = null)
{
    public const string ConsoleLogFile = "console.log", EngineLogFile = "engine.log", PidFile = "engine.pid",
        ControlSocketFile = "control.sock", ExitFileName = "exit.json";
    private const int MaxUnixSocketPath = 107;
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(10), StartLockWait = TimeSpan.FromSeconds(1);

    public VmStore Store => store;

    /// <summary>$XHYVE_ENGINE, else `xhyve` next to this library (the module ships it there), else on PATH.</summary>
    public string EnginePath { get; } = enginePath ?? FindEngine();

    private static string FindEngine()
    {
        string? configured = Environment.GetEnvironmentVariable("XHYVE_ENGINE");
        if (!string.IsNullOrEmpty(configured)) return configured;
        string beside = Path.Combine(Path.GetDirectoryName(typeof(EngineHost).Assembly.Location) ?? AppContext.BaseDirectory, "xhyve");
        if (File.Exists(beside)) return beside;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "xhyve"))) return Path.Combine(dir, "xhyve");
        return beside;   // Start reports it missing, naming this path
    }

    public string FileOf(string name, string file) => Path.Combine(store.FolderOf(name), file);

    /// <summary>Starts the VM's engine and waits until it serves its control socket; throws
    /// <see cref="EngineException"/> with the engine's own message when it does not come up.</summary>
    public VmStatus Start(VirtualMachine vm, TimeSpan timeout)
    {
        HostFacts.CheckMemory(vm);   // memory above the host's RAM: refused before anything is launched
        if (!File.Exists(EnginePath)) throw new EngineException($"the engine host {EnginePath} does not exist (set XHYVE_ENGINE to the xhyve executable)");
        string socket = FileOf(vm.Name, ControlSocketFile);
        if (socket.Length > MaxUnixSocketPath)
            throw new EngineException($"{socket}: longer than a Unix socket path may be ({MaxUnixSocketPath} bytes); set XHYVE_HOME to a shorter folder");
        // Held until the engine serves its socket (or failed): a second start meanwhile is refused as "already
        // starting", and one after it finds the engine and is refused as "already Running".
        IDisposable startLock;
        try { startLock = store.LockForStart(vm.Name, StartLockWait); }
        catch (VmStoreException e) { throw new EngineException(e.Message); }
        using (startLock) return StartLocked(vm, socket, timeout);
    }

    private VmStatus StartLocked(VirtualMachine vm, string socket, TimeSpan timeout)
    {
        var status = GetStatus(vm.Name);
        if (status.State != VmState.Off) throw new EngineException($"VM '{vm.Name}' is already {status.State} (engine pid {status.ProcessId})");
        foreach (var stale in new[] { PidFile, ControlSocketFile, ExitFileName })
            File.Delete(FileOf(vm.Name, stale));
        // The shell's >> below follows a symlink and appends to anything: only our own regular file (or none) is used.
        try { OutputFiles.CheckReplaceable(FileOf(vm.Name, EngineLogFile), "engine log"); }
        catch (IOException e) { throw new EngineException(e.Message); }

        var args = new List<string>(VmArguments.ToArguments(vm, FileOf(vm.Name, ConsoleLogFile)))
        {
            "-F", FileOf(vm.Name, PidFile), "--control-socket", socket, "--exit-file", FileOf(vm.Name, ExitFileName),
        };
        // setsid --fork: the engine gets its own session and is not our child, so it outlives this shell and
        // init reaps it. The shell only redirects its output into the engine log.
        var start = new ProcessStartInfo("setsid") { UseShellExecute = false };
        foreach (var a in new[] { "--fork", "/bin/sh", "-c", "exec \"$0\" \"$@\" </dev/null >>\"$XHYVE_ENGINE_LOG\" 2>&1", EnginePath })
            start.ArgumentList.Add(a);
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["XHYVE_ENGINE_LOG"] = FileOf(vm.Name, EngineLogFile);
        using (var launcher = Process.Start(start) ?? throw new EngineException("setsid did not start"))
        {
            launcher.WaitForExit();
            if (launcher.ExitCode != 0) throw new EngineException($"setsid could not start the engine (exit status {launcher.ExitCode})");
        }

        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (File.Exists(FileOf(vm.Name, ExitFileName)))
            {
                // The engine writes its exit file (and syncs its folder) before it removes its pid file and exits:
                // until then it still looks alive, with no exit status to report.
                var ended = WaitFor(vm.Name, s => s.State == VmState.Off, TimeSpan.FromSeconds(5), null) ?? GetStatus(vm.Name);
                throw new EngineException($"VM '{vm.Name}' did not start: {ended.ExitReason ?? $"the engine exited with status {ended.ExitCode}"}");
            }
            if (File.Exists(socket))
            {
                try
                {
                    using var client = new ControlClient(socket, ReplyTimeout);
                    var served = StatusFrom(client.Ask("state"));
                    // The socket is served while the machine is still being built ("Starting"): the start is
                    // done once the vCPUs run.
                    if (served.State != VmState.Starting || clock.Elapsed > timeout) return served;
                    Thread.Sleep(20);   // a machine build takes a while: no new connection every few ms meanwhile
                }
                catch (EngineException) when (clock.Elapsed < timeout) { }
            }
            if (clock.Elapsed > timeout)
                throw new EngineException($"VM '{vm.Name}': the engine did not come up within {timeout.TotalSeconds:F0} s (see {FileOf(vm.Name, EngineLogFile)})");
            Thread.Sleep(5);
        }
    }

    /// <summary>The VM's status: asks a live engine; for a VM that is off, reads how the last run ended.</summary>
    public VmStatus GetStatus(string name)
    {
        int? pid = ReadPid(name);
        if (pid is int p && IsEngineAlive(p, FileOf(name, ControlSocketFile)))
        {
            try
            {
                using var client = new ControlClient(FileOf(name, ControlSocketFile), ReplyTimeout);
                return StatusFrom(client.Ask("state"));
            }
            catch (EngineException)
            {
                return new VmStatus(VmState.Starting, p);   // alive, but the socket is not up yet (or any more)
            }
        }
        var exit = ReadExitFile(name);
        if (exit != null) return exit;
        if (pid is int dead)
            return new VmStatus(VmState.Off, dead, ExitReason: $"the engine (pid {dead}) ended without reporting an exit status: it was killed or crashed",
                EngineDied: true, LastConsoleLines: ConsoleTail(name, 10).Lines);
        return new VmStatus(VmState.Off);
    }

    private static VmStatus StatusFrom(JsonElement reply) => new(
        Enum.Parse<VmState>(reply.GetProperty("state").GetString()!), reply.GetProperty("pid").GetInt32(),
        TimeSpan.FromSeconds(reply.GetProperty("uptimeSeconds").GetDouble()));

    private int? ReadPid(string name)
    {
        try { return int.TryParse(File.ReadAllText(FileOf(name, PidFile)).Trim(), out int pid) ? pid : null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The process exists, is not a zombie, and is the engine serving this VM's socket (not a reused pid).</summary>
    private static bool IsEngineAlive(int pid, string socket)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            if (close < 0 || close + 2 >= stat.Length || stat[close + 2] == 'Z') return false;
            return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0').Contains(socket);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private VmStatus? ReadExitFile(string name)
    {
        string file = FileOf(name, ExitFileName);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var root = doc.RootElement;
            return new VmStatus(VmState.Off, ExitCode: root.GetProperty("exitCode").GetInt32(),
                ExitReason: root.TryGetProperty("reason", out var r) ? r.GetString() : null);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return new VmStatus(VmState.Off, ExitReason: $"{file}: unreadable exit status: {e.Message}");
        }
    }

    /// <summary>Sends a control command to the VM's running engine.</summary>
    public JsonElement Control(string name, string command)
    {
        using var client = Connect(name);
        return client.Ask(command);
    }

    public ControlClient Connect(string name)
    {
        var status = GetStatus(name);
        if (status.State is VmState.Off) throw new EngineException($"VM '{name}' is not running");
        return new ControlClient(FileOf(name, ControlSocketFile), ReplyTimeout);
    }

    /// <summary>Shuts the VM down: the ACPI power button, then waiting up to <paramref name="timeout"/>. With
    /// <paramref name="force"/> a guest that is not listening, or does not finish in time, is turned off.</summary>
    public VmStatus Stop(string name, TimeSpan timeout, bool force, Action<TimeSpan>? progress = null)
    {
        try { Control(name, "powerbutton"); }
        catch (EngineException) when (EndsOnItsOwn(name) is VmStatus off)
        {
            return off;   // it was off, or went off on its own before the button reached it
        }
        catch (EngineException) when (force)
        {
            return TurnOff(name);   // no ACPI, or no guest listening to the button
        }
        var status = WaitFor(name, s => s.State == VmState.Off, timeout, progress);
        if (status != null) return status;
        if (force) return TurnOff(name);
        throw new EngineException($"VM '{name}' did not shut down within {timeout.TotalSeconds:F0} s of the power button; turn it off instead (-TurnOff)");
    }

    /// <summary>Turns the VM off at once and waits for its engine to exit.</summary>
    public VmStatus TurnOff(string name)
    {
        try { Control(name, "stop"); }
        catch (EngineException) when (EndsOnItsOwn(name) is VmStatus off)
        {
            return off;   // it was off, or went off on its own before the command reached it
        }
        return WaitFor(name, s => s.State == VmState.Off, TimeSpan.FromSeconds(30), null)
            ?? throw new EngineException($"VM '{name}': the engine did not exit within 30 s of being turned off");
    }

    /// <summary>After a command failed: the VM's status if it is off, or goes off within a moment (an engine
    /// that is exiting has closed its socket already); null while its engine still answers.</summary>
    private VmStatus? EndsOnItsOwn(string name) => GetStatus(name).State is VmState.Running or VmState.Paused
        ? null
        : WaitFor(name, s => s.State == VmState.Off, TimeSpan.FromSeconds(2), null);

    /// <summary>Polls the status until <paramref name="done"/> holds; null on timeout.</summary>
    public VmStatus? WaitFor(string name, Func<VmStatus, bool> done, TimeSpan timeout, Action<TimeSpan>? progress)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var status = GetStatus(name);
            if (done(status)) return status;
            if (clock.Elapsed >= timeout) return null;
            progress?.Invoke(clock.Elapsed);
            Thread.Sleep(20);
        }
    }

    /// <summary>Waits until the console log matches <paramref name="pattern"/>; the matching text, or null on timeout.</summary>
    public string? WaitForConsole(string name, Regex pattern, TimeSpan timeout, Action<TimeSpan>? progress)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var match = pattern.Match(ReadConsole(name));
            if (match.Success) return match.Value;
            if (clock.Elapsed >= timeout) return null;
            progress?.Invoke(clock.Elapsed);
            Thread.Sleep(20);
        }
    }

    /// <summary>Everything the guest wrote to its console log (empty before its first start).</summary>
    public string ReadConsole(string name)
    {
        try
        {
            using var stream = new FileStream(FileOf(name, ConsoleLogFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return ""; }
    }

    /// <summary>The last <paramref name="lines"/> lines of the console log, read back from its end (a few blocks,
    /// however long the log has grown).</summary>
    public LogTail ConsoleTail(string name, int lines) => LogTail.Read(FileOf(name, ConsoleLogFile), lines);

    private const int FollowChunk = 1 << 20;

    /// <summary>The complete lines the console log holds from byte <paramref name="offset"/> on (at most 1 MiB of
    /// them per call), and the offset after the last of them: where the next call continues. A log shorter than
    /// <paramref name="offset"/> was replaced, and is read from its start.</summary>
    public (IReadOnlyList<string> Lines, long Next) ReadConsoleLines(string name, long offset)
    {
        try
        {
            using var stream = new FileStream(FileOf(name, ConsoleLogFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
            if (stream.Length < offset) offset = 0;
            var buffer = new byte[(int)Math.Min(FollowChunk, stream.Length - offset)];
            stream.Position = offset;
            stream.ReadExactly(buffer);
            int last = Array.LastIndexOf(buffer, (byte)'\n');
            // One line longer than a chunk is passed on in chunk-sized pieces rather than held back for ever.
            if (last < 0 && buffer.Length < FollowChunk) return ([], offset);
            int take = last < 0 ? buffer.Length : last;
            var lines = new System.Text.UTF8Encoding(false, false).GetString(buffer, 0, take).Split('\n').Select(l => l.TrimEnd('\r')).ToList();
            return (lines, offset + take + (last < 0 ? 0 : 1));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return ([], 0); }
    }
}
