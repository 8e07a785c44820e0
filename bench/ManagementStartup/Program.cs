using System.Diagnostics;
using System.Net.Sockets;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// Time to a running VM on the hello guest (spin=1), two ways, medians of N runs:
//   direct:  the engine started as a child process, polled on its control socket until it answers "Running"
//   managed: what New-XhyveVM | Start-XhyveVM | Wait-XhyveVM -For Running do: store the VM, launch the engine
//            detached (setsid), wait for Running through the control socket
// Usage: ManagementStartup ENGINE GUEST [RUNS]
string engine = args[0], guest = args[1];
int runs = args.Length > 2 ? int.Parse(args[2]) : 10;
string root = Directory.CreateTempSubdirectory("xhyve-bench").FullName;
try
{
    var store = new VmStore(root);
    var host = new EngineHost(store, engine);
    var direct = new List<double>();
    var managed = new List<double>();
    for (int i = 0; i < runs + 1; i++)   // the first round warms the page cache and is dropped
    {
        string folder = Directory.CreateTempSubdirectory("xhyve-direct").FullName;
        string socket = Path.Combine(folder, "c.sock");
        var clock = Stopwatch.StartNew();
        var start = new ProcessStartInfo(engine) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-A", "-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,null", "-f", $"multiboot,{guest},,spin=1", "--control-socket", socket })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        while (true)
        {
            try
            {
                using var client = new ControlClient(socket, TimeSpan.FromSeconds(5));
                if (client.Ask("state").GetProperty("state").GetString() == "Running") break;
            }
            catch (EngineException) { Thread.Sleep(1); }
        }
        double directMs = clock.Elapsed.TotalMilliseconds;
        process.Kill();
        process.WaitForExit();
        Directory.Delete(folder, true);

        string name = $"bench{i}";
        clock.Restart();
        var vm = store.Create(new VirtualMachine { Name = name, MultibootPath = guest, KernelCommandLine = "spin=1", MemoryStartupBytes = 64L << 20 });
        host.Start(vm, TimeSpan.FromSeconds(30));
        host.WaitFor(name, s => s.State == VmState.Running, TimeSpan.FromSeconds(30), null);
        double managedMs = clock.Elapsed.TotalMilliseconds;
        host.TurnOff(name);
        store.Remove(name);
        if (i == 0) continue;
        direct.Add(directMs);
        managed.Add(managedMs);
    }
    static double Median(List<double> v) { v.Sort(); return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2; }
    double d = Median(direct), m = Median(managed);
    Console.WriteLine($"| path | median to Running (ms), {runs} runs |");
    Console.WriteLine("|---|---|");
    Console.WriteLine($"| engine started directly, control socket polled | {d:F0} |");
    Console.WriteLine($"| management library (store + detached launch + wait) | {m:F0} |");
    Console.WriteLine($"| added by management | {m - d:F0} (target <= 150) |");
}
finally { Directory.Delete(root, true); }
