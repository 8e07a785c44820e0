using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xhyve.TestSupport;

namespace Xhyve.Engine.Tests.Support;

/// <summary>The result of one run of the `xhyve` engine process.</summary>
public sealed record EngineRun(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    /// <summary>The guest's "XHYVE-TEST key=value" lines.</summary>
    public IReadOnlyDictionary<string, string> Results { get; } = Regex.Matches(Stdout, @"^XHYVE-TEST (\w+)=(.*?)\r?$", RegexOptions.Multiline)
        .GroupBy(m => m.Groups[1].Value).ToDictionary(g => g.Key, g => g.Last().Groups[2].Value);

    public bool Done => Stdout.Contains("XHYVE-TEST done");

    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1}s\n--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";
}

/// <summary>Starts the engine under test (the NativeAOT build, <see cref="EngineUnderTest"/>) and test guests built by the test build.</summary>
public static class EngineProcess
{
    public static string Root { get; } = FindRoot();
    public static string GuestDir => Path.Combine(Root, "tests", "guests", "build");
    public static string Guest(string name) => Path.Combine(GuestDir, name + ".elf");
    public static string Executable => EngineUnderTest.Path;

    public const string KvmSkipReason = "/dev/kvm is absent: this test needs KVM to run a guest";
    public static bool HasKvm => File.Exists("/dev/kvm");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "XhyvePS.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("XhyvePS.sln not found");
    }

    /// <summary>A guest run with COM1 on stdio, the usual slots, and the given extra arguments.</summary>
    public static EngineRun RunGuest(string guest, string? cmdline = null, IEnumerable<string>? extra = null, int timeoutSeconds = 60)
    {
        var args = new List<string>(extra ?? []) { "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{Guest(guest)},,{cmdline}" };
        return Run(args, timeoutSeconds);
    }

    public static EngineRun Run(IEnumerable<string> args, int timeoutSeconds = 60) => RunProgram(Executable, args, timeoutSeconds);

    /// <summary>Runs any program (QEMU for cross-checks) the way <see cref="Run"/> runs the engine.</summary>
    public static EngineRun RunProgram(string program, IEnumerable<string> args, int timeoutSeconds)
    {
        using var p = StartProcess(args, program);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var sw = Stopwatch.StartNew();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(true);
            p.WaitForExit();
            throw new TimeoutException($"{Path.GetFileName(program)} did not exit within {timeoutSeconds}s:\n{stdout.Result}\n{stderr.Result}");
        }
        return new EngineRun(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }

    /// <summary>Starts the engine; its stdout is collected in the background for ReadUntil/ReadFor.</summary>
    public static RunningEngine Start(IEnumerable<string> args) => new(StartProcess(args));

    /// <summary>Starts any program (QEMU) with extra environment variables, collected like <see cref="Start"/>.</summary>
    public static RunningEngine StartProgram(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null) =>
        new(StartProcess(args, program, environment));

    private static Process StartProcess(IEnumerable<string> args, string? program = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(program ?? Executable)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false, StandardOutputEncoding = Encoding.Latin1,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        return Process.Start(psi)!;
    }

    public static string ReadUntil(RunningEngine p, string marker, TimeSpan timeout) => p.ReadUntil(marker, timeout);

    public static string ReadFor(RunningEngine p, TimeSpan window) => p.ReadFor(window);

    /// <summary>Sends a signal with kill(1), e.g. "TERM".</summary>
    public static void Signal(RunningEngine p, string signal)
    {
        using var kill = Process.Start("kill", $"-{signal} {p.Id}")!;
        kill.WaitForExit();
    }
}

/// <summary>An engine process whose stdout a background task collects, so tests can wait for markers and
/// look at what arrived in a time window without competing readers.</summary>
public sealed class RunningEngine : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly Task<string> _stderr;
    private readonly Task _stdout;
    private readonly Lock _lock = new();
    private int _consumed;

    public RunningEngine(Process process)
    {
        _process = process;
        _stdout = Task.Run(async () =>
        {
            var buffer = new char[256];
            int n;
            while ((n = await process.StandardOutput.ReadAsync(buffer)) > 0)
                lock (_lock) _output.Append(buffer, 0, n);
        });
        _stderr = process.StandardError.ReadToEndAsync();
    }

    /// <summary>Waits until the process has exited and its stdout is read to the end.</summary>
    public bool WaitForOutput(TimeSpan timeout) => _process.HasExited && _stdout.Wait(timeout);

    /// <summary>Everything on stdout so far, whatever earlier reads consumed.</summary>
    public string Output { get { lock (_lock) return _output.ToString(); } }

    /// <summary>The process's stderr, once it has exited (empty before).</summary>
    public string Stderr => _process.HasExited && _stderr.Wait(5_000) ? _stderr.Result : "";

    public int Id => _process.Id;
    public StreamWriter StandardInput => _process.StandardInput;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;
    /// <summary>Waits for the process to exit, then (briefly) for its stdout to be read to the end: a native engine's
    /// last lines can still be in the pipe when its exit is seen.</summary>
    public bool WaitForExit(int milliseconds)
    {
        if (!_process.WaitForExit(milliseconds)) return false;
        ((IAsyncResult)_stdout).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(5));   // not Wait(): a failed reader is not this call's error
        return true;
    }

    /// <summary>SIGKILL, as a crash or a power cut would end the engine; waits until it is gone.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        _process.Kill(true);
        _process.WaitForExit();
    }

    /// <summary>Waits for <paramref name="marker"/> after what earlier calls consumed; returns the text up to it.</summary>
    public string ReadUntil(string marker, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_lock)
            {
                string all = _output.ToString();
                int at = all.IndexOf(marker, _consumed, StringComparison.Ordinal);
                if (at >= 0)
                {
                    string text = all[_consumed..(at + marker.Length)];
                    _consumed = at + marker.Length;
                    return text;
                }
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"'{marker}' did not appear within {timeout.TotalSeconds}s; output so far:\n{all}");
            }
            Thread.Sleep(20);
        }
    }

    /// <summary>What arrives during the next <paramref name="window"/>.</summary>
    public string ReadFor(TimeSpan window)
    {
        lock (_lock) _consumed = _output.Length;
        Thread.Sleep(window);
        lock (_lock)
        {
            string text = _output.ToString(_consumed, _output.Length - _consumed);
            _consumed = _output.Length;
            return text;
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) { _process.Kill(true); _process.WaitForExit(); }
        _process.Dispose();
    }
}
