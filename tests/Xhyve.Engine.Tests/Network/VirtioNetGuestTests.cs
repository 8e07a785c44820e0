using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Engine.Tests.Network;

/// <summary>
/// virtio-net end to end with the vnet driver guest: user mode through passt (DHCP, ARP, UDP to the host's
/// loopback, a host port forward into the guest), TAP in a network namespace (ping and UDP from the host side,
/// malformed frames dropped by the guest), the same scenarios under QEMU's virtio-net-pci with the same backends
/// (tests/guests/vnet-check.sh runs both), two adapters at once, and the faults: passt killed, a guest without
/// receive buffers, a guest flooding the send queue.
/// </summary>
public sealed class VirtioNetGuestTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vnet").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static string Script => Path.Combine(EngineProcess.Root, "tests", "guests", "vnet-check.sh");
    private static bool HasPasst => Xhyve.Vmm.Devices.Virtio.Net.PasstBackend.FindPasst() != null;
    private const string NoPasst = "passt is not installed (apt-get install passt; scripts/setup-debian.sh does): user-mode networking needs it";

    private static void SkipUnlessUserMode()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(HasPasst, NoPasst);
    }

    private static void SkipUnlessTap()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(Environment.UserName == "root", "the TAP scenario makes a network namespace and a TAP device, which needs root");
        foreach (var tool in new[] { "ip", "ping", "python3" })
            Skip.IfNot(OnPath(tool), $"the TAP scenario needs {tool} (iproute2, iputils-ping, python3; scripts/setup-debian.sh installs them)");
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, program)));

    /// <summary>The results of vnet-check.sh: per scenario, the guest's XHYVE-TEST keys, and which scenarios passed.</summary>
    private sealed record ScriptRun(int ExitCode, string Output, Dictionary<string, Dictionary<string, string>> Results, HashSet<string> Passed)
    {
        public Dictionary<string, string> Of(string scenario) =>
            Results.TryGetValue(scenario, out var r) ? r : throw new Xunit.Sdk.XunitException($"scenario {scenario} reported nothing:\n{Output}");
    }

    private static ScriptRun RunScript(string vmm, params string[] scenarios)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Script);
        foreach (var s in scenarios) start.ArgumentList.Add(s);
        start.Environment["VNET_VMM"] = vmm;
        start.Environment["XHYVE"] = EngineProcess.Executable;
        start.Environment["VNET_ELF"] = EngineProcess.Guest("vnet");
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException($"vnet-check.sh ({vmm}) did not finish:\n{stdout.Result}"); }
        string output = stdout.Result + stderr.Result;
        var results = new Dictionary<string, Dictionary<string, string>>();
        foreach (Match m in Regex.Matches(output, @"^(\w+): XHYVE-TEST (\w+)=(.*?)\r?$", RegexOptions.Multiline))
        {
            if (!results.TryGetValue(m.Groups[1].Value, out var r)) results[m.Groups[1].Value] = r = new();
            r[m.Groups[2].Value] = m.Groups[3].Value;
        }
        var passed = Regex.Matches(output, @"^PASS (\w+)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToHashSet();
        return new ScriptRun(p.ExitCode, $"exit {p.ExitCode}\n{output}", results, passed);
    }

    /// <summary>What `xhyve -M` prints for these arguments: the MAC of each adapter, in -s order.</summary>
    private static List<string> PrintedMacs(params string[] args)
    {
        var run = EngineProcess.Run(["-M", .. args]);
        Assert.True(run.ExitCode == 0, run.ToString());
        return Regex.Matches(run.Stdout, @"^MAC: ([0-9a-f:]{17})$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
    }

    [SkippableFact]
    public void UserMode_GuestGetsALeaseFromPasst_ResolvesTheGateway_AndGetsAUdpEchoFromTheHostLoopback()
    {
        SkipUnlessUserMode();
        var run = RunScript("xhyve", "user");
        Assert.True(run.Passed.Contains("user"), run.Output);
        var r = run.Of("user");
        Assert.Equal("1", r["dhcp"]);
        Assert.Equal("1", r["gw_arp"]);
        Assert.Equal("ok", r["udp_echo"]);
        Assert.Equal("1", r["link_up"]);
        Assert.Equal("0", r["frames_bad"]);
        // The device's MAC is the stable one -M prints for the same command line (the script's: slot 2, default name).
        Assert.Equal(PrintedMacs("-s", "2,virtio-net").Single(), r["mac"]);
    }

    [SkippableFact]
    public void UserMode_HostPortForward_CarriesDatagramsFromTheHostToTheGuestAndBack()
    {
        SkipUnlessUserMode();
        var run = RunScript("xhyve", "hostfwd");
        Assert.True(run.Passed.Contains("hostfwd"), run.Output);
        Assert.Equal("3", run.Of("hostfwd")["udp_echoed"]);
    }

    [SkippableFact]
    public void Tap_HostSidePingsAndUdpReachTheGuest_AndMalformedFramesAreDroppedByTheGuest()
    {
        SkipUnlessTap();
        var run = RunScript("xhyve", "tap");
        Assert.True(run.Passed.Contains("tap"), run.Output);
        var r = run.Of("tap");
        Assert.True(int.Parse(r["icmp_echoed"]) >= 3, run.Output);
        Assert.Equal("1", r["udp_echoed"]);
    }

    /// <summary>The same guest on QEMU's virtio-net-pci (a device nobody here wrote) with the same backends reports
    /// the same results, scenario by scenario.</summary>
    [SkippableFact]
    public void CrossCheck_QemuVirtioNetPci_WithTheSameBackends_GivesTheGuestTheSameResults()
    {
        SkipUnlessUserMode();
        Skip.IfNot(OnPath("qemu-system-x86_64"), "qemu-system-x86_64 is not installed (the cross-check runs the guest on QEMU's virtio-net-pci)");
        bool tap = Environment.UserName == "root" && OnPath("ip") && OnPath("ping") && OnPath("python3");
        string[] scenarios = tap ? ["user", "transitional", "hostfwd", "tap"] : ["user", "transitional", "hostfwd"];
        if (!tap) Console.WriteLine("cross-check: the tap scenario is left out (needs root, ip, ping and python3)");
        var ours = RunScript("xhyve", scenarios);
        var qemu = RunScript("qemu", scenarios);
        string both = $"--- ours ---\n{ours.Output}\n--- QEMU ---\n{qemu.Output}";
        string[] compared = ["found", "queues", "status", "link_up", "dhcp", "ip", "gw", "mask", "dhcp_server", "gw_arp", "udp_echo",
            "listening", "udp_echoed", "icmp_echoed", "frames_bad", "done"];
        foreach (var s in scenarios)
        {
            Assert.True(qemu.Passed.Contains(s), $"QEMU failed scenario {s}: {both}");
            Assert.True(ours.Passed.Contains(s), $"we failed scenario {s}: {both}");
            var (a, b) = (ours.Of(s), qemu.Of(s));
            foreach (var key in compared.Where(k => a.ContainsKey(k) || b.ContainsKey(k)))
                Assert.True(a.GetValueOrDefault(key) == b.GetValueOrDefault(key),
                    $"{s}: {key} is {a.GetValueOrDefault(key) ?? "(none)"} here and {b.GetValueOrDefault(key) ?? "(none)"} under QEMU\n{both}");
        }
    }

    /// <summary>Two adapters, each with its own passt and its own stable MAC: the guest drives either one (nic=K) and
    /// each gets a lease and its echo.</summary>
    [SkippableFact]
    public void TwoAdapters_EachHasItsOwnBackendAndMac_AndEachCarriesTraffic()
    {
        SkipUnlessUserMode();
        string[] nics = ["-s", "2,virtio-net", "-s", "5,virtio-net"];
        var macs = PrintedMacs(nics);
        Assert.Equal(2, macs.Count);
        Assert.NotEqual(macs[0], macs[1]);
        using var echo = new UdpEcho();
        for (int nic = 0; nic < 2; nic++)
        {
            var run = EngineProcess.RunGuest("vnet", $"mode=user echo={echo.Port} nic={nic}", ["-A", .. nics]);
            Assert.True(run.Done, run.ToString());
            Assert.Equal(nic == 0 ? "2" : "5", run.Results["slot"]);
            Assert.Equal(macs[nic], run.Results["mac"]);
            Assert.Equal("ok", run.Results["udp_echo"]);
        }
    }

    /// <summary>A UDP echo server on the host's loopback (what the guest reaches at passt's gateway address).</summary>
    private sealed class UdpEcho : IDisposable
    {
        private readonly UdpClient _udp = new(new IPEndPoint(IPAddress.Loopback, 0));
        private readonly Thread _thread;
        public int Port => ((IPEndPoint)_udp.Client.LocalEndPoint!).Port;

        public UdpEcho()
        {
            _thread = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        var from = new IPEndPoint(IPAddress.Any, 0);
                        var data = _udp.Receive(ref from);
                        _udp.Send(data, data.Length, from);
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            }) { IsBackground = true };
            _thread.Start();
        }

        public void Dispose() => _udp.Dispose();
    }

    private static int FreeUdpPort()
    {
        using var probe = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.Client.LocalEndPoint!).Port;
    }

    private RunningEngine StartWithControl(string cmdline, params string[] net) => EngineProcess.Start(
        ["-A", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", .. net, "-f", $"multiboot,{EngineProcess.Guest("vnet")},,{cmdline}",
         "--control-socket", Path.Combine(_dir, "ctl.sock")]);

    /// <summary>The vnet guest on a user-mode adapter whose guest port 7 is forwarded from a free host UDP port, once the
    /// guest says it is listening, with a control connection.</summary>
    private (RunningEngine Engine, ControlTestClient Control, int HostPort) StartListening(string cmdline)
    {
        int hostPort = FreeUdpPort();
        var p = StartWithControl(cmdline, "-s", $"2,virtio-net,hostfwd=udp:127.0.0.1:{hostPort}-:7");
        EngineProcess.ReadUntil(p, "XHYVE-TEST listening=", TimeSpan.FromSeconds(60));
        return (p, new ControlTestClient(Path.Combine(_dir, "ctl.sock")), hostPort);
    }

    private Dictionary<string, long> NetCounters(ControlTestClient c)
    {
        var device = c.Ask("counters").GetProperty("devices").EnumerateArray().First(d => d.GetProperty("device").GetString()!.StartsWith("virtio-net"));
        return device.EnumerateObject().Where(p => p.Value.ValueKind == System.Text.Json.JsonValueKind.Number).ToDictionary(p => p.Name, p => p.Value.GetInt64());
    }

    /// <summary>utime + stime (clock ticks) of the engine's virtio-net worker thread ("virtio virtio-net ..." cut to 15
    /// characters by the kernel).</summary>
    private static long WorkerTicks(int engine)
    {
        foreach (var task in Directory.EnumerateDirectories($"/proc/{engine}/task"))
        {
            if (File.ReadAllText(Path.Combine(task, "comm")).Trim() != "virtio virtio-n") continue;
            string stat = File.ReadAllText(Path.Combine(task, "stat"));
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[11]) + long.Parse(fields[12]);
        }
        throw new Xunit.Sdk.XunitException("the engine has no virtio-net worker thread");
    }

    private static int PasstChildOf(int engine)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                int close = stat.LastIndexOf(')');
                var fields = stat[(close + 2)..].Split(' ');
                if (int.Parse(fields[1]) == engine && stat.Contains("(passt")) return pid;
            }
            catch (IOException) { }
        }
        return -1;
    }

    /// <summary>passt is killed while the guest is echoing datagrams the host keeps sending: the link goes down (the
    /// guest's STATUS and the link_up counter say so), the engine keeps running and says why on its error output.</summary>
    [SkippableFact]
    public void PasstKilledWhileTheGuestSends_LinkGoesDown_EngineKeepsRunningAndSaysWhy()
    {
        SkipUnlessUserMode();
        var (p, c, hostPort) = StartListening("mode=listen listen=7 n=100000 secs=60");
        using var engine = p;
        using var control = c;
        using var sender = new UdpClient();
        var stop = new CancellationTokenSource();
        var send = Task.Run(() =>
        {
            var payload = new byte[200];
            while (!stop.IsCancellationRequested) { sender.Send(payload, payload.Length, "127.0.0.1", hostPort); Thread.Sleep(2); }
        });
        var deadline = Stopwatch.StartNew();
        while (NetCounters(c)["tx_packets"] < 20 && deadline.Elapsed < TimeSpan.FromSeconds(30)) Thread.Sleep(50);
        Assert.True(NetCounters(c)["tx_packets"] >= 20, "the guest never echoed the host's datagrams");

        int passt = PasstChildOf(p.Id);
        Assert.True(passt > 0, "no passt process under the engine");
        Process.GetProcessById(passt).Kill();
        while (NetCounters(c)["link_up"] != 0 && deadline.Elapsed < TimeSpan.FromSeconds(45)) Thread.Sleep(50);
        stop.Cancel();
        send.Wait();
        Assert.Equal(0, NetCounters(c)["link_up"]);
        Assert.Equal("Running", c.Ask("state").GetProperty("state").GetString());
        c.Ask("stop");
        Assert.True(p.WaitForExit(30_000), "the engine did not stop");
        Assert.Contains("the link is down, the guest keeps running", p.Stderr);
        Assert.Contains("passt", p.Stderr);
    }

    /// <summary>A guest that posts no receive buffers while frames arrive: the frames wait in the backend, the engine
    /// neither spins nor fails, and answers its control socket.</summary>
    [SkippableFact]
    public void GuestWithoutReceiveBuffers_FramesWait_EngineDoesNotSpinAndStaysResponsive()
    {
        SkipUnlessUserMode();
        var (p, c, hostPort) = StartListening("mode=static ip=192.0.2.2 echo=7 norx=1 n=1 pings=0 secs=60");
        using var engine = p;
        using var control = c;
        using (var sender = new UdpClient())
            for (int i = 0; i < 200; i++) sender.Send(new byte[100], 100, "127.0.0.1", hostPort);
        var deadline = Stopwatch.StartNew();
        while (NetCounters(c)["rx_waits_for_buffers"] == 0 && deadline.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(50);
        var counters = NetCounters(c);
        Assert.True(counters["rx_waits_for_buffers"] >= 1, string.Join(", ", counters));
        Assert.Equal(0, counters["rx_packets"]);
        // Not a timing goal: a device worker that spun on the readable socket would burn the whole window on a core.
        // (The guest itself polls on its vCPU thread, so only the worker's own time is looked at.)
        long before = WorkerTicks(p.Id);
        Thread.Sleep(3000);
        long used = WorkerTicks(p.Id) - before;
        Assert.True(used < 150, $"the virtio-net worker used {used} clock ticks of CPU in 3 s while frames waited for buffers");
        Assert.Equal("Running", c.Ask("state").GetProperty("state").GetString());
        c.Ask("stop");
        Assert.True(p.WaitForExit(30_000));
    }

    /// <summary>A guest that keeps its send ring full: every frame reaches passt (the device holds a frame while passt's
    /// socket is full rather than dropping it), the control socket keeps answering meanwhile, and the guest finishes.</summary>
    [SkippableFact]
    public void GuestFloodingItsSendQueue_EveryFrameReachesPasst_AndTheEngineStaysResponsive()
    {
        SkipUnlessUserMode();
        const int Frames = 60000;
        using var p = StartWithControl($"mode=blast port=9 n={Frames} size=1024", "--verbose", "-s", "2,virtio-net");
        EngineProcess.ReadUntil(p, "XHYVE-TEST blasting=", TimeSpan.FromSeconds(60));
        var seen = new List<long>();
        try
        {
            using var c = new ControlTestClient(Path.Combine(_dir, "ctl.sock"));
            while (!p.Output.Contains("XHYVE-TEST sent="))
            {
                Assert.Equal("Running", c.Ask("state").GetProperty("state").GetString());
                seen.Add(NetCounters(c)["tx_packets"]);
                Thread.Sleep(50);
            }
        }
        // The guest finished meanwhile: the engine closes the control socket while it exits, so the process may
        // still be running for a moment when the write fails; wait for it rather than read HasExited at once.
        catch (Exception e) when (e is SocketException or IOException or System.Text.Json.JsonException && p.WaitForExit(10_000)) { }
        Assert.True(p.WaitForExit(60_000), "the guest did not finish");
        Assert.True(seen.Count >= 2 && seen[^1] > seen[0], $"the control socket answered {seen.Count} times while the guest flooded; tx_packets: {string.Join(", ", seen)}");
        var run = new EngineRun(p.ExitCode, p.Output, p.Stderr, TimeSpan.Zero);
        Assert.Equal($"{Frames}", run.Results["sent"]);
        // The counters the engine prints at exit with --verbose.
        var line = run.Stderr.Split('\n').Single(l => l.StartsWith("xhyve: virtio-net 0:2:0: notifications="));
        var counters = Regex.Matches(line, @"(\w+)=(\d+)").ToDictionary(m => m.Groups[1].Value, m => long.Parse(m.Groups[2].Value));
        Assert.True(counters["tx_packets"] >= Frames, line);
        foreach (var (name, value) in counters.Where(k => k.Key.StartsWith("tx_dropped_")))
            Assert.True(value == 0, $"{name}={value}: {line}");
    }
}
