using Xhyve.Vmm.Config;
using Xhyve.Engine.Runtime;
using Xhyve.Vmm;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Hypervisor.Kvm;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Serial;
using Xhyve.Vmm.Storage;

// The engine runs on the KVM backend (and later Hypervisor.framework): Unix sockets and file modes are fine.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Xhyve.Engine;

/// <summary>The `xhyve` engine host: one process, one VM.</summary>
public static class Program
{
    public const string Version = BuildInfo.Version;

    /// <summary>How this engine's code was compiled, for -v: "NativeAOT" in the shipped executable, "JIT" when the
    /// assembly runs on the .NET runtime (the library build the tests load). It reports what is running, so a test
    /// can prove which engine it drives: a JIT has compiled methods by now, NativeAOT has none. (RuntimeFeature's
    /// dynamic-code flags cannot tell: PublishAot switches them off in the JIT build's runtimeconfig too.)</summary>
    public static string CodeGeneration => System.Runtime.JitInfo.GetCompiledMethodCount() > 0 ? "JIT" : "NativeAOT";

    /// <summary>How long a guest gets to shut down after the ACPI power button before it is turned off.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "disk") return Disk.DiskCommand.Run(args[1..]);
        if (args.Length > 0 && args[0] == "ctl") return Control.ControlCommand.Run(args[1..]);
        CliResult cli;
        OnReset onReset;
        string? logProblem = null;
        try
        {
            // First, so every message after it (a bad command line's too) goes to the log.
            (args, string? engineLog) = TakeOption(args, "--engine-log");
            if (engineLog != null)
            {
                try { OutputFiles.RedirectStandardStreams(engineLog, "--engine-log"); }
                catch (IOException e) { logProblem = e.Message; }
            }
            (args, var asked) = TakeOnReset(args);
            cli = CommandLineParser.Parse(args);
            onReset = asked ?? DefaultOnReset(cli.Spec);
        }
        catch (CliException e) { return Fail(e.Message); }
        _lastError = null;
        // Before the pid file exists and for the rest of the process: a signal at any point, shutdown included,
        // ends in the cleanup below rather than the signal's default action.
        if (cli.Action == CliAction.Run && logProblem == null) _signals = EngineSignals.Register(ShutdownTimeout);
        // A log that cannot be opened still ends in the exit file, where the management library reads why.
        int code = logProblem != null ? Fail(logProblem) : Run(cli, onReset);
        // The exit file before the pid file goes: whoever watches sees the engine end with its status, never
        // a moment where it is gone without one.
        if (cli.ExitFile != null && cli.Action == CliAction.Run && !_exitFileRefused) Control.ExitFile.Write(cli.ExitFile, code, _lastError, _resets);
        _pidFile?.Dispose();
        return code;
    }

    /// <summary>The last message printed for an error or stop, for the exit file.</summary>
    private static string? _lastError;
    /// <summary>How many times the machine was reset and built again, for the exit file.</summary>
    private static int _resets;
    private static PidFile? _pidFile;
    /// <summary>Held for the process's life: a registration that is collected unregisters its signal.</summary>
    private static EngineSignals? _signals;
    /// <summary>A refused --exit-file path is left untouched at exit too (writing it checks again anyway).</summary>
    private static bool _exitFileRefused;

    /// <summary>-M, as xhyve: one "MAC: xx:xx:xx:xx:xx:xx" line per network adapter in -s order, nothing else run.</summary>
    private static int PrintMacs(VmSpecification spec)
    {
        var bad = spec.PciDevices.Where(d => d.Emulation is "virtio-net" or "virtio-tap").Select(d => d.Device)
            .OfType<InvalidDeviceSpec>().Select(d => d.Problem).ToList();
        if (bad.Count > 0) return Fail(string.Join(Environment.NewLine + "xhyve: ", bad));
        foreach (var (_, mac) in spec.NetworkAdapters) Console.Out.WriteLine($"MAC: {mac}");
        return 0;
    }

    /// <summary>Engine options the VM specification's parser does not know, listed after its usage.</summary>
    public const string EngineUsage = """
               --on-reset=exit|restart: what a guest reset does: exit (as xhyve: exit status 2; the default with
                   -f kexec/multiboot) or restart (build the machine again in this process, keeping the pid, control
                   socket and console log; the default with a boot ROM; a guest resetting within 1 s of starting 10
                   times in a row ends the engine with status 2)
               --engine-log PATH: the engine's own standard output and error are appended to PATH (a regular file of
                   this user, created 0644, never through a symlink) and its standard input is /dev/null, so a
                   launcher needs no shell to redirect them

        """;

    /// <summary>The parser's usage with the engine's own options among the long options, before the exit statuses.</summary>
    private static string Usage
    {
        get
        {
            string usage = CommandLineParser.Usage;
            int at = usage.LastIndexOf("Exit status:", StringComparison.Ordinal);
            return at < 0 ? usage + Environment.NewLine + EngineUsage : usage[..at] + EngineUsage + usage[at..];
        }
    }

    /// <summary>Takes --on-reset out of the arguments (it is the engine's, not the VM specification's); a value of
    /// another option that looks like it is left alone.</summary>
    internal static (string[] Arguments, OnReset? OnReset) TakeOnReset(string[] args)
    {
        var (rest, value) = TakeOption(args, "--on-reset", "exit or restart");
        OnReset? onReset = value switch
        {
            null => null,
            "exit" => OnReset.Exit,
            "restart" => OnReset.Restart,
            _ => throw new CliException($"--on-reset: '{value}' is not a choice (exit or restart)"),
        };
        return (rest, onReset);
    }

    /// <summary>Takes the engine's own <paramref name="option"/> ("--x VALUE" or "--x=VALUE"; the last one wins) out of
    /// the arguments, leaving alone a value of another option that looks like it; null when it is not given.</summary>
    internal static (string[] Arguments, string? Value) TakeOption(string[] args, string option, string what = "a path")
    {
        var rest = new List<string>(args.Length);
        string? found = null;
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (arg == option || (arg.StartsWith(option, StringComparison.Ordinal) && arg.Length > option.Length && arg[option.Length] == '='))
            {
                found = (arg.Length > option.Length ? arg[(option.Length + 1)..] : i + 1 < args.Length ? args[++i] : null)
                    ?? throw new CliException($"{option}: missing value ({what})");
                continue;
            }
            rest.Add(arg);
            if (!arg.Contains('=') && CommandLineParser.TakesValue(arg) && i + 1 < args.Length) rest.Add(args[++i]);
        }
        return (rest.ToArray(), found);
    }

    /// <summary>--on-reset when not given: a machine booted from a ROM restarts from it (a BIOS or an OS on it resets
    /// to reboot, and a reboot of a real PC keeps the machine on); a loaded kernel keeps xhyve's exit status 2.</summary>
    internal static OnReset DefaultOnReset(VmSpecification spec) => spec.Firmware is BootromFirmware ? OnReset.Restart : OnReset.Exit;

    private static int Run(CliResult cli, OnReset onReset)
    {
        switch (cli.Action)
        {
            case CliAction.Help: Console.Out.Write(Usage); return 0;
            case CliAction.Version: Console.Out.WriteLine($"xhyve: {Version} (XhyvePS, KVM backend, {CodeGeneration})"); return 0;
            case CliAction.PrintMacs: return PrintMacs(cli.Spec);
        }

        var spec = cli.Spec;
        var problems = spec.Validate(hostMemoryBytes: HostMemory.TotalBytes() ?? ulong.MaxValue);
        if (problems.Count > 0)
        {
            foreach (var p in problems) Console.Error.WriteLine($"xhyve: {p}");
            _lastError = string.Join(Environment.NewLine, problems);
            return 1;
        }
        if (!KvmHypervisor.IsPresent) return Fail($"{KvmHypervisor.DevicePath} not found: this host has no KVM");
        // The paths the engine will write are checked before anything is created, so a refused one changes nothing.
        try
        {
            if (cli.ExitFile != null)
            {
                _exitFileRefused = true;
                OutputFiles.CheckReplaceable(cli.ExitFile, "--exit-file");
                _exitFileRefused = false;
            }
            if (cli.ControlSocket != null) Control.ControlServer.CheckPath(cli.ControlSocket);
            if (spec.Com1 != null) SerialPort.Check("com1", spec.Com1);
            if (spec.Com2 != null) SerialPort.Check("com2", spec.Com2);
            foreach (var d in spec.PciDevices)
                if (d.Device is UartSpec uart) SerialPort.Check($"uart at {d.Address}", uart.Backends);
        }
        catch (IOException e) { return Fail(SystemErrors.Describe(e)); }

        Machine? machine = null;
        Control.ControlServer? control = null;
        EngineLifecycle? lifecycle = null;
        try
        {
            if (spec.PidFile != null) _pidFile = PidFile.Create(spec.PidFile);
            using var hypervisor = KvmHypervisor.Open();
            lifecycle = new EngineLifecycle(onReset);
            var configuration = new EngineConfiguration(spec, lifecycle);
            _signals?.Attach(lifecycle);
            for (int boot = 0; ; boot++)
            {
                // Every boot is built from the parsed specification (with the media changed since): a reset machine is a
                // new machine, with new vCPUs, devices, backends and memory, as the guest found it the first time.
                // Attached before the socket is first served: a client then always finds a machine (Starting).
                VmRunner runner;
                (machine, runner) = configuration.BuildAndAttach(current =>
                {
                    var r = new VmRunner(current.VcpuPinning);
                    return (new VmBuilder(current, hypervisor, r).Build(), r);
                });
                if (boot == 0)
                {
                    foreach (var w in machine.Warnings) Console.Error.WriteLine($"xhyve: warning: {w}");
                    if (cli.Verbose) foreach (var line in MachineReport.Describe(machine)) Console.Error.WriteLine($"xhyve: {line}");
                }
                foreach (var s in machine.SerialPorts)
                    foreach (var pty in s.PtyNames) Console.Error.WriteLine($"xhyve: {s.Name} connected to {pty}");

                if (cli.ControlSocket != null) control ??= Control.ControlServer.Start(cli.ControlSocket, lifecycle, configuration);
                runner.Start(machine);
                var status = runner.WaitForExit();
                TerminalGuard.RestoreAll();
                if (cli.Verbose) foreach (var line in MachineReport.Counters(machine)) Console.Error.WriteLine($"xhyve: {line}");
                var outcome = lifecycle.Finish(status, runner.StopReason,
                    runner.StartedUtc == default ? TimeSpan.Zero : DateTime.UtcNow - runner.StartedUtc);
                if (outcome.Restart)
                {
                    Console.Error.WriteLine($"xhyve: {runner.StopReason}; restarting the machine (reset {lifecycle.Resets + 1})");
                    machine.Dispose();
                    bool whole = machine.DisposedFully;
                    machine = null;
                    if (!whole)
                    {
                        // Its guest memory and VM descriptor stay mapped for a vCPU thread that never ended: a rebuild
                        // per reset would leak a machine's RAM each time.
                        const string stuck = "a vCPU thread of the reset machine did not end, so its memory cannot be freed; " +
                            "the engine ended instead of building the machine again";
                        lifecycle.RequestStop(VmExitStatus.Error, stuck);
                        return End(VmExitStatus.Error, stuck);
                    }
                    if (outcome.Delay > TimeSpan.Zero) Thread.Sleep(outcome.Delay);
                    // A stop or SIGTERM after Finish (during the back-off, say) ends the engine before a machine is built.
                    if (lifecycle.End is { } end) return End(end.Status, end.Reason);
                    continue;
                }
                return End(outcome.Status, outcome.Reason);
            }

            int End(VmExitStatus status, string? reason)
            {
                _lastError = reason;
                // A reset the engine does not restart from is news only when it was asked to restart (a reset storm).
                if (reason != null && (status is not (VmExitStatus.PoweredOff or VmExitStatus.Reset)
                    || (status == VmExitStatus.Reset && onReset == OnReset.Restart)))
                    Console.Error.WriteLine($"xhyve: {reason}");
                return (int)status;
            }
        }
        catch (VmConfigurationException e)
        {
            foreach (var p in e.Problems) Console.Error.WriteLine($"xhyve: {p}");
            _lastError = string.Join(Environment.NewLine, e.Problems);
            return 1;
        }
        catch (Exception e) when (e is BootImageException or HypervisorException or GuestMemoryException or StorageException or IOException
            or UnauthorizedAccessException or InvalidOperationException or OverflowException or OutOfMemoryException)
        {
            return Fail(SystemErrors.Describe(e));
        }
        finally
        {
            // Also when a rebuild failed: the resets done before it still happened.
            if (lifecycle != null) _resets = lifecycle.Resets;
            // A failed rebuild's error is what a "wait-running" client is told.
            lifecycle?.Close(_lastError ?? "the engine is ending");
            TerminalGuard.RestoreAll();
            control?.Dispose();
            machine?.Dispose();
        }
    }

    private static int Fail(string message)
    {
        _lastError = message;
        TerminalGuard.RestoreAll();
        Console.Error.WriteLine($"xhyve: {message}");
        return 1;
    }
}

/// <summary>-F: a pid file this engine holds locked while it runs (so a file left by a killed engine is known stale
/// and replaced, and a running engine's is refused), never following a symlink or replacing anything but a stale
/// pid file of this user, and removed at exit while it is still ours.</summary>
internal sealed class PidFile : IDisposable
{
    private readonly string _path;
    private readonly FileIdentity _identity;
    private readonly int _lockFd;
    private PidFile(string path, FileIdentity identity, int lockFd) { _path = path; _identity = identity; _lockFd = lockFd; }

    public static PidFile Create(string path)
    {
        var (identity, fd) = OutputFiles.CreatePidFile(path, "-F");
        return new PidFile(path, identity, fd);
    }

    private int _disposed;

    // Once only: closing the lock descriptor twice could close a descriptor reused by something else.
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) OutputFiles.RemovePidFile(_path, _identity, _lockFd);
    }
}
