using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

using Xhyve.Vmm.Native;

namespace Xhyve.Management.Engine;

/// <summary>What a VM is doing, as its engine host (or the lack of one) shows it. Stopping: the engine's process is alive
/// and has removed its control socket, as an engine does first when it exits (tearing the machine down can take
/// seconds before its exit file is written). NotResponding: the engine's process is alive and its control socket is
/// there but does not answer (it is stopped with SIGSTOP, or wedged); it can still be turned off.</summary>
public enum VmState { Off, Starting, Running, Paused, Stopping, NotResponding }

/// <summary>
/// A VM's runtime status. For a VM that is off, <see cref="ExitCode"/> and <see cref="ExitReason"/> tell how its
/// last run ended. <see cref="EngineDied"/> means the engine vanished without reporting (killed, or crashed);
/// <see cref="LastConsoleLines"/> then shows what the guest printed last. <see cref="Resets"/> counts the guest's
/// resets (reboots) the engine restarted the machine after, in this run or, for a VM that is off, its last run.
/// <see cref="Uptime"/> is null until the vCPUs run (and after every reset it starts from 0 again).
/// </summary>
public sealed record VmStatus(VmState State, int? ProcessId = null, TimeSpan? Uptime = null, int? ExitCode = null, string? ExitReason = null,
    bool EngineDied = false, IReadOnlyList<string>? LastConsoleLines = null, int? Resets = null);

/// <summary>
/// Runs VMs in engine hosts: one detached `xhyve` process per VM (its own session, so closing the shell
/// that started it does not stop it), with its console log, pid file, control socket and exit file in the
/// VM's folder. Everything after the start goes through the control socket.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]   // /proc, setsid and Unix sockets
public sealed partial class EngineHost(VmStore store, string? enginePath = null)
{
    public const string ConsoleLogFile = "console.log", EngineLogFile = "engine.log", PidFile = "engine.pid",
        ControlSocketFile = "control.sock", ExitFileName = "exit.json";
    private const int MaxUnixSocketPath = 107;
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(10), StartLockWait = TimeSpan.FromSeconds(1);
    /// <summary>How long a status query waits for the engine's "state": short, so Get-XhyveVM answers within a second
    /// for an engine that does not answer (stopped with SIGSTOP, wedged), which is then NotResponding.</summary>
    public static readonly TimeSpan StateTimeout = TimeSpan.FromMilliseconds(700);
    /// <summary>How long an engine may run without serving its control socket before it counts as NotResponding
    /// rather than Starting (the machine build comes before the socket).</summary>
    public static readonly TimeSpan SocketStartTimeout = TimeSpan.FromSeconds(30);
    /// <summary>How long a turn-off waits for the engine to take "stop" and then to exit before it kills the engine. 5 s
    /// rather than less: on a loaded host (two cores shared by several VMs) a healthy engine can take a second or two
    /// to answer, and a kill there would throw away a clean power-off. An engine that does not answer in time is still
    /// probed once more (see <see cref="TurnOff"/>) before it is killed.</summary>
    public static readonly TimeSpan TurnOffTimeout = TimeSpan.FromSeconds(5), TurnOffExitTimeout = TimeSpan.FromSeconds(30);
    /// <summary>How long a live engine whose control socket is gone (it is exiting: the socket goes first, the exit file
    /// last) is given to end on its own before a turn-off kills it.</summary>
    public static readonly TimeSpan ExitingTimeout = TimeSpan.FromSeconds(10);
    /// <summary>How long a kill waits for the VM's lock, held by a start (or a change to vm.json) meanwhile.</summary>
    private static readonly TimeSpan KillLockWait = TimeSpan.FromSeconds(10);
    /// <summary>The exit code reported for an engine the management library killed: 128 + SIGKILL, as a shell reports it.</summary>
    public const int KilledExitCode = 137;

    public VmStore Store => store;

    /// <summary>$XHYVE_ENGINE, else `xhyve` next to this library (the module ships it there), else on PATH.</summary>
    public string EnginePath { get; } = enginePath ?? FindEngine();

    private static string FindEngine()
    {
        string? configured = Environment.GetEnvironmentVariable("XHYVE_ENGINE");
        if (!string.IsNullOrEmpty(configured)) return configured;
        string beside = Path.Combine(Path.GetDirectoryName(typeof(EngineHost).Assembly.Location) ?? AppContext.BaseDirectory, "xhyve");
        if (File.Exists(beside)) return beside;
        return ProgramSearch.OnPath("xhyve", File.Exists) ?? beside;   // Start reports it missing, naming this path
    }

    public string FileOf(string name, string file) => Path.Combine(store.FolderOf(name), file);

    /// <summary>Starts the VM's engine and waits until it serves its control socket; throws
    /// <see cref="EngineException"/> with the engine's own message when it does not come up.</summary>
    public VmStatus Start(VirtualMachine vm, TimeSpan timeout)
    {
        HostFacts.CheckMemory(vm);   // memory above the host's RAM: refused before anything is launched
        if (!File.Exists(EnginePath)) throw new EngineException($"the engine host {EnginePath} does not exist (set XHYVE_ENGINE to the xhyve executable)");
        // The shell's exec would fail into engine.log, and the start would wait out its timeout for a socket.
        if (!ProgramSearch.IsExecutable(EnginePath))
            throw new EngineException($"the engine host {EnginePath} is not executable (chmod +x it, or import the module once as its owner)");
        // The VM's folder, resolved once: resolving a name lists vms/ (for its case-insensitive match), and a start
        // looks at its files many times.
        string folder = store.FolderOf(vm.Name);
        string socket = Path.Combine(folder, ControlSocketFile);
        if (socket.Length > MaxUnixSocketPath)
            throw new EngineException($"{socket}: longer than a Unix socket path may be ({MaxUnixSocketPath} bytes); set XHYVE_HOME to a shorter folder");
        // Held until the engine serves its socket (or failed): a second start meanwhile is refused as "already
        // starting", and one after it finds the engine and is refused as "already Running".
        IDisposable startLock;
        try { startLock = store.LockForStart(vm.Name, StartLockWait); }
        catch (VmStoreException e) { throw new EngineException(e.Message); }
        using (startLock) return StartLocked(vm, folder, socket, timeout);
    }

    private VmStatus StartLocked(VirtualMachine vm, string folder, string socket, TimeSpan timeout)
    {
        string In(string file) => Path.Combine(folder, file);
        var status = StatusIn(vm.Name, folder);
        if (status.State != VmState.Off) throw new EngineException($"VM '{vm.Name}' is already {status.State} (engine pid {status.ProcessId})");
        foreach (var stale in new[] { PidFile, ControlSocketFile, ExitFileName })
            File.Delete(In(stale));
        // The engine opens its log without following a symlink, but a refusal found here needs no launch.
        try { OutputFiles.CheckReplaceable(In(EngineLogFile), "engine log"); }
        catch (IOException e) { throw new EngineException(e.Message); }

        // --on-reset restart: a guest reboot keeps the VM Running in the same engine, as in Hyper-V.
        var args = new List<string>(VmArguments.ToArguments(vm, In(ConsoleLogFile), In(VirtualMachine.UefiVariablesFile)))
        {
            "-F", In(PidFile), "--control-socket", socket, "--exit-file", In(ExitFileName), "--on-reset", "restart",
        };
        // Watching before the launch: the socket or exit file cannot appear unseen.
        using var watch = FolderWatch.Open(folder);
        using var launch = Launch(args, In(EngineLogFile));

        var clock = Stopwatch.StartNew();
        var sinceLivenessCheck = Stopwatch.StartNew();
        bool asked = false;
        while (true)
        {
            if (File.Exists(In(ExitFileName))) return Ended(vm.Name);
            TimeSpan left = timeout - clock.Elapsed;
            if (!asked && File.Exists(socket))
            {
                // One blocking "wait-running": the engine replies when the BSP has entered the guest, or says why it
                // will not (then its exit file follows, and the watch wakes for it).
                using var client = ConnectListening(socket, left + ReplyTimeout);
                if (client != null)
                {
                    asked = true;
                    try { return StatusFrom(client.Ask($"wait-running timeout_ms={Math.Max(1, (long)left.TotalMilliseconds)}"), EngineAgeIn(folder)); }
                    catch (EngineException) when (clock.Elapsed >= timeout && !File.Exists(In(ExitFileName)))
                    {
                        return StatusIn(vm.Name, folder);   // still building: Starting, as the caller's timeout allows
                    }
                    catch (EngineException) { }   // stopping, or gone: its exit file says how it ended
                }
            }
            // An engine killed or crashed before it wrote its exit file (while it builds the machine, before its socket)
            // leaves nothing to wake for: its pid file names a process that is gone. Looked at when the watch waited a
            // whole LivenessCheck, not on each file the engine creates (its pid file, logs, socket: a status read,
            // /proc reads and a refused connect each, ~1 ms per start).
            TimeSpan untilCheck = LivenessCheck - sinceLivenessCheck.Elapsed;   // read once: it must stay positive below
            if (untilCheck > TimeSpan.Zero && clock.Elapsed <= timeout)
            {
                watch.Wait(Min(left, untilCheck));
                continue;
            }
            sinceLivenessCheck.Restart();
            bool hasPid = ReadPidIn(folder) != null;
            if (hasPid && StatusIn(vm.Name, folder) is { State: VmState.Off } died) return Ended(vm.Name, died);
            // Gone before its pid file: setsid could not execute it, or it died before it opened its log. Only while there
            // is no pid file: Failed lists every process in /proc, which an engine that wrote its pid file does not need
            // (the pid file is read again after it, as an engine may have written it meanwhile).
            if (!hasPid && launch.Failed(socket) is { } said && !File.Exists(In(ExitFileName)) && ReadPidIn(folder) == null)
                throw new EngineException($"VM '{vm.Name}' did not start: " + (said.Length > 0 ? said
                    : $"the engine ended before it wrote its pid file or an exit status (killed, or crashed while starting; see {In(EngineLogFile)})"));
            if (clock.Elapsed > timeout)
                throw new EngineException($"VM '{vm.Name}': the engine did not come up within {timeout.TotalSeconds:F0} s " +
                    $"(see {In(EngineLogFile)}{launch.Output() switch { "" => "", var text => $"; before its log it wrote: {text}" }})");
            // Bounded: an engine that dies before it creates anything wakes no one.
            watch.Wait(Min(left, LivenessCheck));
        }
    }

    /// <summary>How often a start that waits for the engine's socket looks whether the engine is still there.</summary>
    private static readonly TimeSpan LivenessCheck = TimeSpan.FromMilliseconds(500);

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    /// <summary>Launches `setsid --fork ENGINE --engine-log LOG ARGS`: the engine gets its own session and is not our
    /// child (setsid forks it and exits at once), so it outlives this shell, init reaps it and a long-lived pwsh
    /// collects no zombies; the engine redirects its own standard streams into the log, so no shell is involved.
    /// setsid's standard error is a pipe read here: the engine inherits it until it opens its log, so what setsid's
    /// child says when it cannot execute the engine (and anything the engine says before its log) is read there.</summary>
    private Launched Launch(List<string> args, string engineLog)
    {
        var (status, stderr) = SessionLauncher.Run("setsid", [.. LaunchArguments(EnginePath, engineLog, args)]);
        var reader = new StreamReader(stderr);
        var launched = new Launched(reader, reader.ReadToEndAsync());
        if (status == 0) return launched;
        // It failed before forking: nothing else holds the pipe, so its message is complete at once.
        string said = launched.Output(TimeSpan.FromSeconds(2));
        launched.Dispose();
        throw new EngineException($"setsid could not start the engine (exit status {status}){(said.Length > 0 ? ": " + said : "")}");
    }

    /// <summary>The setsid launcher and the text read from its standard error, which the engine shares until it has
    /// redirected its streams into its log (then, or when it is gone, the text is complete).</summary>
    private sealed class Launched(StreamReader pipe, Task<string> stderr) : IDisposable
    {
        /// <summary>What was written before the pipe closed, trimmed to one line; "" while it is open.</summary>
        public string Output(TimeSpan? wait = null)
        {
            if (wait is { } w) stderr.Wait(w);
            return stderr.IsCompletedSuccessfully ? string.Join("; ", stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)) : "";
        }

        /// <summary>Null while the engine may still be starting; once the pipe is closed (the engine redirected its
        /// streams, or ended) and no process serving <paramref name="socket"/> exists, what was written to it ("" for nothing).</summary>
        public string? Failed(string socket) => !stderr.IsCompleted || EngineProcessExists(socket) ? null : Output();

        public void Dispose() => pipe.Dispose();
    }

    /// <summary>Whether any live process has <paramref name="socket"/> among its arguments: the engine of this VM before
    /// its pid file exists.</summary>
    private static bool EngineProcessExists(string socket)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
            if (int.TryParse(Path.GetFileName(dir), out int pid) && IsEngineAlive(pid, socket)) return true;
        return false;
    }

    /// <summary>setsid's arguments: the engine itself, with its arguments as they are (no shell to quote them for).</summary>
    internal static IEnumerable<string> LaunchArguments(string enginePath, string engineLog, IEnumerable<string> args) =>
        ["--fork", enginePath, "--engine-log", engineLog, .. args];

    /// <summary>A connection to a socket that exists; null when it went away (the engine is exiting). The engine binds
    /// the socket a moment before it listens (a chmod between), so a refused connect is retried, for at most
    /// <see cref="ListenWait"/>; no file event marks the listen.</summary>
    private static ControlClient? ConnectListening(string socket, TimeSpan replyTimeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try { return new ControlClient(socket, replyTimeout); }
            catch (EngineException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } && clock.Elapsed < ListenWait)
            {
                Thread.Sleep(1);
            }
            catch (EngineException) { return null; }
        }
    }

    private static readonly TimeSpan ListenWait = TimeSpan.FromMilliseconds(200);

    /// <summary>The start of an engine that ended (or died) before its VM ran: its status when the guest ran and ended
    /// already, else an <see cref="EngineException"/> with the engine's reason.</summary>
    private VmStatus Ended(string name, VmStatus? died = null)
    {
        // The engine writes its exit file (and syncs its folder) before it removes its pid file and exits: until then
        // it still looks alive, with no exit status to report.
        var ended = died ?? WaitFor(name, s => s.State == VmState.Off, TimeSpan.FromSeconds(5), null) ?? GetStatus(name);
        // Status 1 is the engine's own error (before the guest ran, or the host failing it); any other status is the
        // guest's doing (powered off, reset in a storm, faulted): it started, and is off again already.
        if (ended.State == VmState.Off && ended.ExitCode is int code && code != (int)Xhyve.Vmm.VmExitStatus.Error) return ended;
        throw new EngineException($"VM '{name}' did not start: {ended.ExitReason ?? HowItEnded(ended)}");
    }

    /// <summary>Words for an engine's end that came with no reason: its exit status, the signal that killed it (a status
    /// above 128, as a shell reports one), or that it reported none.</summary>
    internal static string HowItEnded(VmStatus ended) => ended switch
    {
        { ExitCode: int code and > 128 and < 128 + 65 } => $"the engine was killed by signal {code - 128}{SignalName(code - 128)} (exit status {code})",
        { ExitCode: int code } => $"the engine exited with status {code}",
        { State: not VmState.Off } => $"the engine{(ended.ProcessId is int p ? $" (pid {p})" : "")} is {ended.State} but did not report an exit status",
        _ => $"the engine{(ended.ProcessId is int p ? $" (pid {p})" : "")} ended without reporting an exit status: it was killed (SIGKILL leaves no word) or crashed",
    };

    private static string SignalName(int signal) => signal switch
    {
        1 => " (SIGHUP)", 2 => " (SIGINT)", 6 => " (SIGABRT)", 9 => " (SIGKILL)", 11 => " (SIGSEGV)", 15 => " (SIGTERM)", _ => "",
    };

    /// <summary>The VM's status: asks a live engine; for a VM that is off, reads how the last run ended.</summary>
    public VmStatus GetStatus(string name) => StatusIn(name, store.FolderOf(name));

    /// <summary><see cref="GetStatus"/> with the VM's folder resolved by the caller, once for the several files a status
    /// reads (resolving a name lists vms/).</summary>
    private VmStatus StatusIn(string name, string folder)
    {
        int? pid = ReadPidIn(folder);
        string socket = Path.Combine(folder, ControlSocketFile);
        if (pid is int p && IsEngineAlive(p, socket))
        {
            var age = EngineAgeIn(folder);
            try
            {
                using var client = new ControlClient(socket, StateTimeout);
                return StatusFrom(client.Ask("state"), age);
            }
            catch (EngineException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock })
            {
                return new VmStatus(VmState.NotResponding, p);   // it took the connection (or not) and said nothing
            }
            catch (EngineException)
            {
                // Alive, but the socket is not up yet (the machine is being built), or not any more: the engine removes
                // it first when it exits, then tears the machine down (seconds, for a large guest) before its exit file.
                // Beyond the start's allowance, a missing socket is that exit under way; a socket that is there and
                // refuses the connection belongs to no listener, which only a wedged engine leaves for long.
                bool young = age is not { } a || a <= SocketStartTimeout;
                return new VmStatus(young ? VmState.Starting : File.Exists(socket) ? VmState.NotResponding : VmState.Stopping, p);
            }
        }
        var exit = ReadExitFileIn(folder);
        if (exit != null) return exit;
        if (pid is int dead)
            return new VmStatus(VmState.Off, dead, ExitReason: $"the engine (pid {dead}) ended without reporting an exit status: it was killed or crashed",
                EngineDied: true, LastConsoleLines: LogTail.Read(Path.Combine(folder, ConsoleLogFile), 10).Lines);
        return new VmStatus(VmState.Off);
    }

    /// <summary>The status an engine's "state" reply gives. An uptime that cannot be (negative, not a number, or longer
    /// than the engine process has existed, <paramref name="engineAge"/>) is dropped rather than shown; so is the uptime
    /// of a VM whose vCPUs have not run yet.</summary>
    internal static VmStatus StatusFrom(JsonElement reply, TimeSpan? engineAge)
    {
        double seconds = reply.TryGetProperty("uptimeSeconds", out var u) && u.ValueKind == JsonValueKind.Number ? u.GetDouble() : double.NaN;
        bool started = reply.TryGetProperty("startedUtc", out var s) ? s.ValueKind == JsonValueKind.String : !double.IsNaN(seconds);
        // A second of slack: the pid file's time and the engine's clock are read at different moments.
        bool sane = started && double.IsFinite(seconds) && seconds >= 0 && (engineAge is not { } age || seconds <= age.TotalSeconds + 1);
        return new VmStatus(Enum.Parse<VmState>(reply.GetProperty("state").GetString()!), reply.GetProperty("pid").GetInt32(),
            sane ? TimeSpan.FromSeconds(seconds) : null,
            Resets: reply.TryGetProperty("resets", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetInt32() : null);
    }

    /// <summary>How long the VM's engine has run: the engine writes its pid file first thing.</summary>
    private static TimeSpan? EngineAgeIn(string folder)
    {
        try
        {
            var written = File.GetLastWriteTimeUtc(Path.Combine(folder, PidFile));
            return written.Year < 1700 ? null : DateTime.UtcNow - written;   // 1601: no such file
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private int? ReadPid(string name) => ReadPidIn(store.FolderOf(name));

    private static int? ReadPidIn(string folder)
    {
        try { return int.TryParse(File.ReadAllText(Path.Combine(folder, PidFile)).Trim(), out int pid) ? pid : null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The process exists, is not a zombie, and is the engine serving this VM's socket (not a reused pid).</summary>
    private static bool IsEngineAlive(int pid, string socket)
    {
        // Its arguments first: most processes a search of /proc looks at are not this engine (a zombie has none). Read
        // into a pooled buffer, not through FileStream, which takes an advisory lock and allocates for every open: a
        // status reads two of these files, and the search for an engine without a pid file two per process.
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ProcReadSize);
        try
        {
            string cmdline = ReadProcFile($"/proc/{pid}/cmdline", buffer);
            if (!HasArgument(cmdline, socket)) return false;
            string stat = ReadProcFile($"/proc/{pid}/stat", buffer);
            int close = stat.LastIndexOf(')');
            return close >= 0 && close + 2 < stat.Length && stat[close + 2] != 'Z';
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    private const int ProcReadSize = 16 << 10;

    /// <summary>Whether one of the NUL-separated arguments of <paramref name="cmdline"/> is exactly <paramref name="argument"/>.</summary>
    internal static bool HasArgument(string cmdline, string argument)
    {
        var all = cmdline.AsSpan();
        foreach (var range in all.Split('\0'))
            if (all[range].SequenceEqual(argument)) return true;
        return false;
    }

    /// <summary>A /proc file's text ("" when it cannot be read: the process is gone); one that fills the buffer (a very
    /// long command line) is read again whole.</summary>
    private static unsafe string ReadProcFile(string path, byte[] buffer)
    {
        int fd = OpenForReading(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return "";
        int length = 0;
        try
        {
            fixed (byte* start = buffer)
            {
                for (nint n; length < buffer.Length && (n = ReadFile(fd, start + length, (nuint)(buffer.Length - length))) > 0;) length += (int)n;
            }
        }
        finally { CloseFile(fd); }
        if (length < buffer.Length) return System.Text.Encoding.UTF8.GetString(buffer, 0, length);
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return ""; }
    }

    /// <summary>The process is gone, or a zombie (dead, not yet reaped).</summary>
    private static bool HasEnded(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close < 0 || close + 2 >= stat.Length || stat[close + 2] is 'Z' or 'X';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return true; }
    }

    private static VmStatus? ReadExitFileIn(string folder)
    {
        string file = Path.Combine(folder, ExitFileName);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var root = doc.RootElement;
            return new VmStatus(VmState.Off, ExitCode: root.GetProperty("exitCode").GetInt32(),
                ExitReason: root.TryGetProperty("reason", out var r) ? r.GetString() : null,
                Resets: root.TryGetProperty("resets", out var n) && n.ValueKind == JsonValueKind.Number ? n.GetInt32() : null);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return new VmStatus(VmState.Off, ExitReason: $"{file}: unreadable exit status: {e.Message}");
        }
    }

    /// <summary>Sends a control command to the VM's running engine.</summary>
    public JsonElement Control(string name, string command, TimeSpan? timeout = null)
    {
        using var client = Connect(name, timeout);
        return client.Ask(command);
    }

    public ControlClient Connect(string name, TimeSpan? timeout = null)
    {
        var status = GetStatus(name);
        if (status.State is VmState.Off) throw new EngineException($"VM '{name}' is not running");
        return new ControlClient(FileOf(name, ControlSocketFile), timeout ?? ReplyTimeout);
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

    /// <summary>Restarts the VM in its engine (same process): a hard reset, or with <paramref name="reboot"/> the ACPI
    /// power button and a new boot once the guest has shut down. Waits until the VM runs again, up to
    /// <paramref name="timeout"/>; with <paramref name="force"/> a guest that does not listen to the power button, or
    /// is not back in time, is reset instead. Returns the status it ends in (Off when the guest went off meanwhile).</summary>
    public VmStatus Restart(string name, bool reboot, TimeSpan timeout, bool force, Action<TimeSpan>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        // The engine counts a restart once the new machine is built: the restart is done when the count has grown past
        // the count before it. Read before the command: the reply's own "resets" may already include this restart (the
        // wait would never end). An engine that tells the count it restarted from ("resetsBefore") is believed instead:
        // a guest reboot between this read and the command would otherwise end the wait early.
        int before = GetStatus(name).Resets ?? 0;
        JsonElement reply;
        try { reply = Control(name, reboot ? "reboot" : "reset"); }
        catch (EngineException) when (reboot && force)
        {
            reboot = false;   // no ACPI, or no guest listening: the reset button instead
            reply = Control(name, "reset");
        }
        if (ResetsBefore(reply) is int told) before = told;
        bool Done(VmStatus s) => s.Resets > before && s.State is VmState.Running or VmState.Paused;
        var status = WaitFor(name, Done, timeout, progress, s => s.State == VmState.Off);
        if (status != null && (Done(status) || status.State == VmState.Off)) return status;
        if (reboot && force)
        {
            Control(name, "reset");
            status = WaitFor(name, s => s.Resets > before && s.State is VmState.Running or VmState.Paused, TimeSpan.FromSeconds(30), progress, s => s.State == VmState.Off);
            if (status != null) return status;
        }
        throw new EngineException(reboot
            ? $"VM '{name}' did not shut down and run again within {timeout.TotalSeconds:F0} s of the power button; reset it instead (Restart-XhyveVM -Type Reset, or -Force)"
            : $"VM '{name}' did not run again within {Math.Max(timeout.TotalSeconds, clock.Elapsed.TotalSeconds):F0} s of the reset");
    }

    /// <summary>The "resetsBefore" of a reset/reboot reply (docs/control-api.md): the restart count the engine restarts from.</summary>
    internal static int? ResetsBefore(JsonElement reply) =>
        reply.ValueKind == JsonValueKind.Object && reply.TryGetProperty("resetsBefore", out var b) && b.ValueKind == JsonValueKind.Number && b.TryGetInt32(out int n) ? n : null;

    /// <summary>Turns the VM off at once and waits for its engine to exit. The engine is killed (SIGKILL, which even a
    /// stopped process cannot hold off) and its stale files removed only when it cannot end on its own: it does not
    /// take "stop" within <see cref="TurnOffTimeout"/> and a second state query does not answer either (stopped with
    /// SIGSTOP, wedged); its control socket is gone (it cannot be reached) and it does not exit within
    /// <see cref="ExitingTimeout"/>; or it took "stop" and does not exit within <see cref="TurnOffExitTimeout"/>.
    /// An engine that is merely slow (it answers the state query) is sent "stop" again with the full reply timeout.</summary>
    public VmStatus TurnOff(string name)
    {
        try { Control(name, "stop", TurnOffTimeout); }
        catch (EngineException) when (EndsOnItsOwn(name) is VmStatus off)
        {
            return off;   // it was off, or went off on its own before the command reached it
        }
        catch (EngineException e)
        {
            var now = GetStatus(name);   // the second probe: does it answer at all?
            if (now.State == VmState.Off) return now;
            if (now.State == VmState.Stopping)
                return Kill(name, $"its control socket {FileOf(name, ControlSocketFile)} is gone, so it cannot be reached, and it did not exit within {ExitingTimeout.TotalSeconds:F0} s");
            if (now.State is not (VmState.Running or VmState.Paused))
                return Kill(name, $"the engine did not take 'stop' within {TurnOffTimeout.TotalSeconds:F0} s, nor answer a state query after ({e.Message})");
            // It answers: merely slow (a loaded host). Once more, with the full reply timeout, before anything drastic.
            try { Control(name, "stop"); }
            catch (EngineException) when (EndsOnItsOwn(name) is VmStatus off) { return off; }
            catch (EngineException again)
            {
                return Kill(name, $"the engine answered a state query but twice did not take 'stop' ({again.Message})");
            }
        }
        return WaitFor(name, s => s.State == VmState.Off, TurnOffExitTimeout, null)
            ?? Kill(name, $"the engine did not exit within {TurnOffExitTimeout.TotalSeconds:F0} s of 'stop'");
    }

    /// <summary>Kills the VM's engine with SIGKILL, once its pid is known to be this VM's engine (not a reused pid),
    /// then removes its pid file and socket and writes the exit file an engine killed this way cannot write. All under
    /// the VM's start lock: a start meanwhile could otherwise launch an engine whose pid file and socket this removes.
    /// File errors come out as <see cref="EngineException"/>, naming the file.</summary>
    private VmStatus Kill(string name, string why)
    {
        IDisposable startLock;
        try { startLock = store.LockForStart(name, KillLockWait); }
        catch (VmStoreException e) { throw new EngineException($"VM '{name}': {why}, and it cannot be killed now: {e.Message}"); }
        try
        {
            using (startLock) return KillLocked(name, why);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException($"VM '{name}': {why}; cleaning up after killing its engine failed: {e.Message}");
        }
    }

    private VmStatus KillLocked(string name, string why)
    {
        string socket = FileOf(name, ControlSocketFile);
        if (ReadPid(name) is not int pid || !IsEngineAlive(pid, socket))
            return WaitFor(name, s => s.State == VmState.Off, TimeSpan.FromSeconds(2), null)
                ?? throw new EngineException($"VM '{name}': {why}, and its engine process could not be found to kill");
        if (Kill(pid, SIGKILL) != 0 && Marshal.GetLastPInvokeError() != ESRCH)
            throw new EngineException($"VM '{name}': {why}, and killing its engine (pid {pid}) failed: {new System.ComponentModel.Win32Exception(Marshal.GetLastPInvokeError()).Message}");
        // Not our child: init reaps it. Gone, or a zombie, once the kernel has torn it down (its command line empties
        // earlier, while the exit is still freeing guest memory).
        var clock = Stopwatch.StartNew();
        while (!HasEnded(pid))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10)) throw new EngineException($"VM '{name}': {why}; its engine (pid {pid}) was sent SIGKILL but did not end within 10 s");
            Thread.Sleep(10);
        }
        string reason = $"killed by the management library (SIGKILL to engine pid {pid}): {why}";
        // Under the start lock no other engine can have started since: the socket is the killed one's. The pid file is
        // removed only while it still names the killed engine, never one written by anything else meanwhile.
        File.Delete(socket);
        if (ReadPid(name) == pid) File.Delete(FileOf(name, PidFile));
        WriteExitFile(name, KilledExitCode, "Killed", reason);
        return GetStatus(name);
    }

    /// <summary>The exit file as the engine writes it (docs/control-api.md), with the engine's own safe writer: a new
    /// file beside it (O_EXCL|O_NOFOLLOW, so no symlink planted there is followed), synced, renamed into place.</summary>
    private void WriteExitFile(string name, int code, string status, string reason)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("exitCode", code);
            w.WriteString("status", status);
            w.WriteString("reason", reason);
            w.WriteString("endedUtc", DateTime.UtcNow);
            w.WriteEndObject();
        }
        OutputFiles.WriteReplacing(FileOf(name, ExitFileName), buffer.ToArray(), "exit file");
    }

    private const int SIGKILL = 9, ESRCH = 3, O_RDONLY = 0, O_CLOEXEC = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenForReading(string path, int flags);

    [LibraryImport("libc", EntryPoint = "read")]
    private static unsafe partial nint ReadFile(int fd, byte* buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int CloseFile(int fd);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int sig);

    /// <summary>After a command failed: the VM's status if it is off, or goes off within a moment (an engine that is
    /// exiting, Stopping, has removed its socket already and is given <see cref="ExitingTimeout"/> to finish); null while
    /// its engine still answers, or does not answer at all.</summary>
    private VmStatus? EndsOnItsOwn(string name)
    {
        var now = GetStatus(name);
        return now.State switch
        {
            VmState.Off => now,
            VmState.Running or VmState.Paused or VmState.NotResponding => null,
            VmState.Stopping => WaitFor(name, s => s.State == VmState.Off, ExitingTimeout, null),
            _ => WaitFor(name, s => s.State == VmState.Off, TimeSpan.FromSeconds(2), null),
        };
    }

    /// <summary>Waits until the VM runs (Running, or Paused after it ran; one paused before it ran is waited for until it
    /// is resumed and runs): its engine's "wait-running" replies the moment the
    /// BSP has entered the guest. Returns that status; the VM's status at once when it is (or goes) off, which it cannot
    /// come back from by itself; null on timeout. The wait is asked for in slices of <see cref="ProgressSlice"/>, only so
    /// <paramref name="progress"/> is told of the time passing; a slice ends early when the VM runs.</summary>
    public VmStatus? WaitForRunning(string name, TimeSpan timeout, Action<TimeSpan>? progress)
    {
        var clock = Stopwatch.StartNew();
        string folder = store.FolderOf(name);   // resolved once: each resolution lists vms/
        string socket = Path.Combine(folder, ControlSocketFile);
        using var watch = FolderWatch.Open(folder);   // a socket still to come, or the exit file
        while (true)
        {
            var status = StatusIn(name, folder);
            // Paused with no uptime: paused before it ever ran (docs/control-api.md); it is Running only once resumed.
            bool notYet = status is { State: VmState.Starting } or { State: VmState.Paused, Uptime: null };
            if (!notYet && status.State is VmState.Running or VmState.Paused or VmState.Off) return status;
            TimeSpan left = timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero) return null;
            var slice = left < ProgressSlice ? left : ProgressSlice;
            bool asked = false;
            if (notYet && ConnectListening(socket, slice + ReplyTimeout) is { } client)
            {
                using (client)
                {
                    asked = true;
                    try { return StatusFrom(client.Ask($"wait-running timeout_ms={Math.Max(1, (long)slice.TotalMilliseconds)}"), EngineAgeIn(folder)); }
                    catch (EngineException) { }   // the slice ended, or it will not run: the status says which
                }
            }
            // Being built before its socket is served, stopping, or not answering: woken by a file it creates.
            if (!asked) watch.Wait(slice);
            progress?.Invoke(clock.Elapsed);
        }
    }

    /// <summary>How long one "wait-running" of <see cref="WaitForRunning"/> lasts at most: a progress report a second.</summary>
    private static readonly TimeSpan ProgressSlice = TimeSpan.FromSeconds(1);

    /// <summary>Polls the status until <paramref name="done"/> holds, or <paramref name="hopeless"/> does (the awaited
    /// state can no longer come: the caller tells the two apart); null on timeout.</summary>
    public VmStatus? WaitFor(string name, Func<VmStatus, bool> done, TimeSpan timeout, Action<TimeSpan>? progress, Func<VmStatus, bool>? hopeless = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var status = GetStatus(name);
            if (done(status) || hopeless?.Invoke(status) == true) return status;
            if (clock.Elapsed >= timeout) return null;
            progress?.Invoke(clock.Elapsed);
            Thread.Sleep(20);
        }
    }

    /// <summary>Waits until the console log matches <paramref name="pattern"/>; the matching text, or null on timeout.
    /// With <paramref name="untilOff"/>, also null as soon as the VM is off and its log holds no match: nothing will
    /// write to it any more.</summary>
    public string? WaitForConsole(string name, Regex pattern, TimeSpan timeout, Action<TimeSpan>? progress, bool untilOff = false)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            // The state before the log: a VM found off after a log without a match has written all it ever will.
            bool off = untilOff && GetStatus(name).State == VmState.Off;
            var match = pattern.Match(ReadConsole(name));
            if (match.Success) return match.Value;
            if (off || clock.Elapsed >= timeout) return null;
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
