using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

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

/// <summary>Starts the engine built next to the tests and test guests built by the test build.</summary>
public static class EngineProcess
{
    public static string Root { get; } = FindRoot();
    public static string GuestDir => Path.Combine(Root, "tests", "guests", "build");
    public static string Guest(string name) => Path.Combine(GuestDir, name + ".elf");
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "xhyve");

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

    public static EngineRun Run(IEnumerable<string> args, int timeoutSeconds = 60)
    {
        using var p = Start(args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var sw = Stopwatch.StartNew();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(true);
            p.WaitForExit();
            throw new TimeoutException($"xhyve did not exit within {timeoutSeconds}s:\n{stdout.Result}\n{stderr.Result}");
        }
        return new EngineRun(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }

    public static Process Start(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            UseShellExecute = false, StandardOutputEncoding = Encoding.Latin1,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    /// <summary>Reads a process's stdout until a line contains <paramref name="marker"/>; returns what was read.</summary>
    public static string ReadUntil(Process p, string marker, TimeSpan timeout)
    {
        var sb = new StringBuilder();
        var deadline = DateTime.UtcNow + timeout;
        var buffer = new char[256];
        while (DateTime.UtcNow < deadline)
        {
            var read = p.StandardOutput.ReadAsync(buffer, 0, buffer.Length);
            if (!read.Wait(deadline - DateTime.UtcNow)) break;
            if (read.Result == 0) break;
            sb.Append(buffer, 0, read.Result);
            if (sb.ToString().Contains(marker)) return sb.ToString();
        }
        throw new TimeoutException($"'{marker}' did not appear within {timeout.TotalSeconds}s; output so far:\n{sb}");
    }

    /// <summary>Sends a signal with kill(1), e.g. "TERM".</summary>
    public static void Signal(Process p, string signal)
    {
        using var kill = Process.Start("kill", $"-{signal} {p.Id}")!;
        kill.WaitForExit();
    }
}
