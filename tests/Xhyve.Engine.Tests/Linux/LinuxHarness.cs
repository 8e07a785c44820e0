using System.Diagnostics;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>What one Linux boot is: the test's /init body, the engine's flags and devices, extra kernel
/// parameters and environment. The harness adds the kernel, the initramfs and COM1 on stdio.</summary>
public sealed record LinuxBootSpec(string InitBody)
{
    public int Cpus { get; init; } = 2;
    public string Memory { get; init; } = "256M";
    public bool Acpi { get; init; } = true;
    /// <summary>Engine flags and devices beyond -A/-c/-m, the host bridge, the LPC bridge and COM1.</summary>
    public IReadOnlyList<string> EngineArgs { get; init; } = [];
    public string ExtraKernelParameters { get; init; } = "";
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();
    /// <summary>This boot's bound, when it does more than boot (the default is <see cref="LinuxHarness.BootTimeout"/>).</summary>
    public TimeSpan? Timeout { get; init; }
    /// <summary>Host programs copied (with their libraries) into the initramfs besides mkfs.ext4.</summary>
    public IReadOnlyList<string> Programs { get; init; } = [];
    /// <summary>A command that runs the engine (its path and arguments are appended), e.g. unshare into a
    /// network namespace; it must exec the engine, so that signals and kill reach it. Empty: the engine itself.</summary>
    public IReadOnlyList<string> Launcher { get; init; } = [];
}

/// <summary>The outcome of one Linux boot: exit status, the whole COM1 console, and the guest's
/// "XHYVE-LINUX key=value" marker lines.</summary>
public sealed record LinuxRun(string Kernel, int ExitCode, string Console, string Stderr, TimeSpan Elapsed)
{
    public IReadOnlyDictionary<string, string> Markers { get; } = LinuxHarness.ParseMarkers(Console);

    /// <summary>Every value of a marker the guest printed several times, in order.</summary>
    public IReadOnlyList<string> All(string key) =>
        Regex.Matches(Console, $@"^XHYVE-LINUX {Regex.Escape(key)}=(.*?)\r?$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();

    /// <summary>A marker's value; a missing marker fails the test with the console's tail.</summary>
    public string Marker(string key) =>
        Markers.TryGetValue(key, out var v) ? v : throw new Xunit.Sdk.XunitException($"Linux did not report '{key}'.\n{Describe()}");

    /// <summary>What a failing assertion prints: exit status, time, the console's last lines and the engine's stderr.</summary>
    public string Describe()
    {
        var lines = Console.Replace("\r", "").Split('\n');
        // The test kernel runs with loglevel=4: a console with nothing on it means /init never ran.
        string tail = Console.Trim().Length == 0 ? "(nothing: the kernel printed no warning and /init did not start)" : string.Join('\n', lines.TakeLast(60));
        return $"{Kernel}: exit {ExitCode} after {Elapsed.TotalSeconds:F0} s; last console lines:\n" + tail + (Stderr.Length > 0 ? $"\n--- engine stderr ---\n{Stderr.Trim()}" : "");
    }

    /// <summary>Asserts the exit status, showing the console tail when it differs.</summary>
    public void AssertExit(int expected) => Assert.True(ExitCode == expected, $"expected exit {expected}.\n{Describe()}");
}

/// <summary>A boot in progress, for tests that act on the VM while Linux runs (signals, kill -9).</summary>
public sealed class LinuxSession(RunningEngine process, DateTime deadline)
{
    public RunningEngine Process { get; } = process;

    /// <summary>Waits for "XHYVE-LINUX key=..." (after what earlier waits consumed) and returns its value.</summary>
    public string WaitFor(string key)
    {
        var left = deadline - DateTime.UtcNow;
        Process.ReadUntil($"XHYVE-LINUX {key}=", left > TimeSpan.Zero ? left : TimeSpan.Zero);
        return Process.ReadUntil("\n", TimeSpan.FromSeconds(10)).TrimEnd('\r', '\n');
    }

    public void Signal(string name) => EngineProcess.Signal(Process, name);
}

/// <summary>Boots Linux kernels with a per-test initramfs under the engine (or QEMU, for cross-checks),
/// bounded in time, and collects what the guest reports.</summary>
public static class LinuxHarness
{
    /// <summary>Per-boot bound: a boot takes 30-60 s here and up to 1.5x that on a loaded host.</summary>
    public static TimeSpan BootTimeout { get; } = TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("XHYVE_LINUX_TIMEOUT"), out int s) && s > 0 ? s : DefaultBootSeconds);

    private const int DefaultBootSeconds = 180;

    private static readonly string ScriptDir = Path.Combine(EngineProcess.Root, "tests", "linux");

    /// <summary>Every Linux test's /init starts with this: the pseudo file systems, PATH and the marker helper.
    /// A Debian kernel loads its drivers from the module tree first.</summary>
    private const string Prologue = """
        #!/bin/sh
        export PATH=/bin:/sbin
        mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
        # Each marker is followed by the guest's uptime at that point (read without forking), for failure reports.
        mark() { read -r up rest < /proc/uptime; echo "XHYVE-LINUX $1=$2"; echo "XHYVE-LINUX-AT $1 ${up}s"; }
        if [ -d /lib/modules ]; then
          modprobe -a virtio_pci virtio_blk virtio_rng virtio_net ext4 isofs ahci sr_mod sd_mod 8250_pci rtc_cmos 2>/dev/null
        fi
        mark init "$(cut -d' ' -f1 /proc/uptime)"

        """;

    /// <summary>The interrupts counted on one /proc/interrupts line, summed over the CPUs.</summary>
    public static long InterruptCount(string procInterruptsLine) =>
        Regex.Match(procInterruptsLine, @"^\s*\w+:((?:\s+\d+)+)").Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Sum(long.Parse);

    public static IReadOnlyDictionary<string, string> ParseMarkers(string console) =>
        Regex.Matches(console, @"^XHYVE-LINUX ([\w.-]+)=(.*?)\r?$", RegexOptions.Multiline)
            .GroupBy(m => m.Groups[1].Value).ToDictionary(g => g.Key, g => g.Last().Groups[2].Value);

    /// <summary>Writes the test's /init and builds the initramfs (tests/linux/make-initramfs.sh) in dir.</summary>
    public static string BuildInitramfs(LinuxKernel kernel, string dir, LinuxBootSpec spec)
    {
        string init = Path.Combine(dir, "init.sh"), initrd = Path.Combine(dir, "initrd.cpio");
        File.WriteAllText(init, Prologue + spec.InitBody.Replace("\r", "") + "\n");
        var args = new List<string> { initrd, init };
        foreach (var p in spec.Programs) args.AddRange(["--program", p]);
        if (kernel.ModuleTree != null) args.AddRange(["--modules", kernel.ModuleTree]);
        var run = EngineProcess.RunProgram(Path.Combine(ScriptDir, "make-initramfs.sh"), args, 120);
        Assert.True(run.ExitCode == 0, $"make-initramfs.sh failed: {run.Stderr}{run.Stdout}");
        return initrd;
    }

    public static string CommandLine(LinuxKernel kernel, LinuxBootSpec spec) =>
        $"{kernel.CommandLine} rdinit=/init {spec.ExtraKernelParameters}".Trim();

    /// <summary>The engine's arguments for a boot.</summary>
    public static List<string> EngineArguments(LinuxKernel kernel, string initrd, LinuxBootSpec spec)
    {
        var args = new List<string>();
        if (spec.Acpi) args.Add("-A");
        args.AddRange(["-c", spec.Cpus.ToString(), "-m", spec.Memory, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio"]);
        args.AddRange(spec.EngineArgs);
        args.AddRange(["-f", $"kexec,{kernel.Image},{initrd},{CommandLine(kernel, spec)}"]);
        return args;
    }

    /// <summary>What `xhyve -M` prints for a boot's command line: each network adapter's MAC, in -s order.</summary>
    public static IReadOnlyList<string> AdapterMacs(LinuxKernel kernel, string dir, LinuxBootSpec spec)
    {
        var run = EngineProcess.Run(["-M", .. EngineArguments(kernel, Path.Combine(dir, "initrd.cpio"), spec)]);
        Assert.True(run.ExitCode == 0, $"xhyve -M failed: {run}");
        return Regex.Matches(run.Stdout, @"^MAC: ([0-9a-f:]{17})\r?$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
    }

    /// <summary>Boots under the engine; <paramref name="interact"/> may act on the running VM (it must let
    /// the guest finish or end the engine itself). The engine is killed at the bound.</summary>
    public static LinuxRun Boot(LinuxKernel kernel, string dir, LinuxBootSpec spec, Action<LinuxSession>? interact = null) =>
        Run(kernel, EngineProcess.Executable, EngineArguments(kernel, BuildInitramfs(kernel, dir, spec), spec), spec, interact);

    /// <summary>The same kernel and initramfs under QEMU (the `pc` machine, -no-reboot so a reset exits):
    /// the cross-check against devices nobody here wrote. qemuDevices are QEMU's -drive/-device arguments.</summary>
    public static LinuxRun BootQemu(LinuxKernel kernel, string dir, LinuxBootSpec spec, IEnumerable<string> qemuDevices)
    {
        string initrd = BuildInitramfs(kernel, dir, spec);
        // arch-capabilities is off because QEMU aborts at start on this host's KVM when it passes the MSR through.
        var args = new List<string> { "-enable-kvm", "-machine", "pc", "-cpu", "host,-arch-capabilities", "-m", spec.Memory, "-smp", spec.Cpus.ToString(),
            "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-kernel", kernel.Image, "-initrd", initrd, "-append", CommandLine(kernel, spec) };
        args.AddRange(qemuDevices);
        return Run(kernel, "qemu-system-x86_64", args, spec, null);
    }

    /// <summary>A boot's bound: its own, scaled like the default when XHYVE_LINUX_TIMEOUT raises that (slow hosts).</summary>
    private static TimeSpan BoundOf(LinuxBootSpec spec) =>
        spec.Timeout is { } own ? own * (BootTimeout.TotalSeconds / DefaultBootSeconds) : BootTimeout;

    private static LinuxRun Run(LinuxKernel kernel, string program, List<string> args, LinuxBootSpec spec, Action<LinuxSession>? interact)
    {
        string name = Path.GetFileName(program);
        if (spec.Launcher.Count > 0)
            (program, args) = (spec.Launcher[0], [.. spec.Launcher.Skip(1), program, .. args]);
        var sw = Stopwatch.StartNew();
        var bound = BoundOf(spec);
        var deadline = DateTime.UtcNow + bound;
        using var process = EngineProcess.StartProgram(program, args, spec.Environment);
        Exception? failure = null;
        try { interact?.Invoke(new LinuxSession(process, deadline)); }
        catch (Exception e) { failure = e; }
        var left = deadline - DateTime.UtcNow;
        bool exited = failure == null && process.WaitForExit((int)Math.Max(0, left.TotalMilliseconds));
        if (!exited) process.Kill();
        process.WaitForExit(5_000);
        process.WaitForOutput(TimeSpan.FromSeconds(5)); // the last lines before the exit
        var run = new LinuxRun($"{kernel.Kind} under {name}", exited ? process.ExitCode : -1,
            process.Output, exited ? process.Stderr : "", sw.Elapsed);
        if (failure != null) throw new Xunit.Sdk.XunitException($"{failure.Message.Split('\n')[0]}\n{run.Describe()}");
        if (!exited) throw new Xunit.Sdk.XunitException($"Linux did not finish within {bound.TotalSeconds:F0} s (killed).\n{run.Describe()}");
        return run;
    }
}
