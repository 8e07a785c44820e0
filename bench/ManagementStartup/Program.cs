using System.Diagnostics;
using System.Runtime.InteropServices;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// Time to a running VM on the hello guest (idle=1: prints "ready" and halts), two ways, interleaved per round:
//   direct:  the engine started as a child process, its control socket awaited (1 ms sleeps until the file exists),
//            then one blocking "wait-running"
//   managed: what New-XhyveVM | Start-XhyveVM | Wait-XhyveVM -For Running do: store the VM, launch the engine
//            detached (setsid --fork, no shell), its socket awaited with inotify, one "wait-running"
// Wall time, this process's CPU time (getrusage: itself and the children it reaped) and the engine's CPU time up to
// Running (its threads' run time from /proc/PID/task/*/schedstat, read the moment it is Running); min/median/max.
// Usage: ManagementStartup ENGINE GUEST [RUNS]
string engine = args[0], guest = args[1];
int runs = args.Length > 2 ? int.Parse(args[2]) : 10;
string root = Directory.CreateTempSubdirectory("xhyve-bench").FullName;
try
{
    var store = new VmStore(root);
    var host = new EngineHost(store, engine);
    var direct = new List<(double Wall, double Cpu, double Engine)>();
    var managed = new List<(double Wall, double Cpu, double Engine)>();
    for (int i = 0; i < runs + 1; i++)   // the first round warms the page cache and the JIT and is dropped
    {
        string folder = Directory.CreateTempSubdirectory("xhyve-direct").FullName;
        string socket = Path.Combine(folder, "c.sock");
        double cpu = Cpu.SelfMs();
        var clock = Stopwatch.StartNew();
        var start = new ProcessStartInfo(engine) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-A", "-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,null", "-f", $"multiboot,{guest},,idle=1", "--control-socket", socket })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        (double, double, double) d;
        try
        {
            // Bounded: a socket that is never served ends the bench, and so does a "wait-running" that fails (retried,
            // an engine whose VM never runs was asked again for ever).
            var giveUp = Stopwatch.StartNew();
            while (true)
            {
                if (giveUp.Elapsed > TimeSpan.FromSeconds(30)) throw new InvalidOperationException($"the engine did not serve {socket} within 30 s");
                if (process.HasExited) throw new InvalidOperationException($"the engine exited with {process.ExitCode}: {process.StandardError.ReadToEnd()}");
                if (File.Exists(socket))
                {
                    ControlClient client;
                    try { client = new ControlClient(socket, TimeSpan.FromSeconds(35)); }
                    catch (EngineException) { Thread.Sleep(1); continue; }   // bound, not listening yet
                    using (client) client.Ask("wait-running timeout_ms=30000");   // throws when it did not run: the bench ends
                    break;
                }
                Thread.Sleep(1);
            }
            d = (clock.Elapsed.TotalMilliseconds, Cpu.SelfMs() - cpu, Cpu.EngineMs(process.Id));
        }
        finally
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit();
            Directory.Delete(folder, true);
        }

        string name = $"bench{i}";
        cpu = Cpu.SelfMs();
        clock.Restart();
        var vm = store.Create(new VirtualMachine { Name = name, MultibootPath = guest, KernelCommandLine = "idle=1", MemoryStartupBytes = 64L << 20 });
        (double, double, double) m;
        try
        {
            var status = host.Start(vm, TimeSpan.FromSeconds(30));
            if (status.State != VmState.Running) throw new InvalidOperationException($"{name} is {status.State}");
            m = (clock.Elapsed.TotalMilliseconds, Cpu.SelfMs() - cpu, Cpu.EngineMs(status.ProcessId!.Value));
        }
        finally
        {
            // Also after a failed start: an engine that came up late must not run on after the bench.
            if (host.GetStatus(name).State != VmState.Off) host.TurnOff(name);
            store.Remove(name);
        }
        if (i == 0) continue;
        direct.Add(d);
        managed.Add(m);
    }
    static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }
    static string Three(IEnumerable<double> values) => $"{Median(values):F0} ({values.Min():F0}-{values.Max():F0})";
    static string Row(string what, List<(double Wall, double Cpu, double Engine)> r) =>
        $"| {what} | {Three(r.Select(x => x.Wall))} | {Three(r.Select(x => x.Cpu))} | {Three(r.Select(x => x.Engine))} |";
    Console.WriteLine($"Load average at the end: {File.ReadAllText("/proc/loadavg").Split(' ')[0]}; {runs} runs each, median (min-max)");
    Console.WriteLine();
    Console.WriteLine("| path | wall ms | this process's CPU ms | engine CPU ms to Running |");
    Console.WriteLine("|---|---|---|---|");
    Console.WriteLine(Row("engine started directly, its socket awaited, one `wait-running`", direct));
    Console.WriteLine(Row("management library (store + detached launch + wait-running)", managed));
    Console.WriteLine($"| **added by management** (difference of the medians) | **{Median(managed.Select(x => x.Wall)) - Median(direct.Select(x => x.Wall)):F0}** (target <= 20) | | |");
}
finally { Directory.Delete(root, true); }

static partial class Cpu
{
    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSec, UserUsec, SystemSec, SystemUsec;
        public long MaxRss, IxRss, IdRss, IsRss, MinFlt, MajFlt, NSwap, InBlock, OuBlock, MsgSnd, MsgRcv, NSignals, NvCsw, NivCsw;
    }

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRUsage(int who, out RUsage usage);

    private static double Ms(int who)
    {
        GetRUsage(who, out var u);
        return (u.UserSec + u.SystemSec) * 1e3 + (u.UserUsec + u.SystemUsec) / 1e3;
    }

    /// <summary>This process and the children it has waited for (RUSAGE_SELF + RUSAGE_CHILDREN), in milliseconds.</summary>
    public static double SelfMs() => Ms(0) + Ms(-1);

    /// <summary>The run time of the process's threads so far (schedstat's first field, nanoseconds), in milliseconds.</summary>
    public static double EngineMs(int pid)
    {
        long ns = 0;
        foreach (var task in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            try { ns += long.Parse(File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ')[0]); }
            catch (IOException) { }   // a thread that ended meanwhile
        }
        return ns / 1e6;
    }
}
