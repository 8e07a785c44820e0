using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xunit.Abstractions;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>What a network boot's host side saw, beside the guest's console.</summary>
public sealed record NetworkRun(LinuxRun Run, IReadOnlyList<string> Macs)
{
    /// <summary>The guest's adapters from its "nic" markers: PCI address -> (interface, driver, MAC).</summary>
    public IReadOnlyDictionary<string, (string Interface, string Driver, string Mac)> Nics =>
        Run.All("nic").Select(l => l.Split(' ')).Where(p => p.Length == 4).ToDictionary(p => p[0], p => (p[1], p[2], p[3]));

    /// <summary>The adapter at PCI slot <paramref name="slot"/> (bus 0, function 0), or a failure naming what Linux listed.</summary>
    public (string Interface, string Driver, string Mac) Nic(int slot) =>
        Nics.TryGetValue($"0000:00:{slot:x2}.0", out var nic) ? nic
            : throw new Xunit.Sdk.XunitException($"Linux lists no network interface at slot {slot}: {string.Join(" | ", Run.All("nic"))}\n{Run.Describe()}");

    /// <summary>Asserts that each adapter's receive ("input") queue has its own MSI-X vector and took interrupts.</summary>
    public void AssertReceiveQueuesTookInterrupts(int adapters)
    {
        var input = Run.All("irq").Where(l => Regex.IsMatch(l, @"virtio\d+-input\.0")).ToList();
        Assert.True(input.Count == adapters, $"expected {adapters} virtio-net receive-queue vectors: {string.Join(" | ", Run.All("irq"))}");
        Assert.All(input, q => Assert.True(LinuxHarness.InterruptCount(q) > 0, $"no interrupts on: {q}"));
    }

    /// <summary>A line of timings for the test log: the whole boot and when (guest uptime) each step ended.</summary>
    public string Timings(params string[] markers) =>
        $"{Run.Kernel}: {Run.Elapsed.TotalSeconds:F0} s in all; guest uptime at " + string.Join(", ", markers.Select(m =>
            $"{m} {Regex.Match(Run.Console, $@"^XHYVE-LINUX-AT {Regex.Escape(m)} (\S+)", RegexOptions.Multiline).Groups[1].Value}"));

    /// <summary>A lease marker ("ADDRESS/PREFIX ROUTER SERVER", written by tests/linux/udhcpc.script, or "none"):
    /// the address with its prefix, and the router.</summary>
    public (string Address, string Router) Lease(string key)
    {
        var parts = Run.Marker(key).Split(' ');
        return (parts[0], parts.Length > 1 ? parts[1] : "");
    }
}

/// <summary>The guest-script pieces both network boots share.</summary>
public static class NetworkScripts
{
    /// <summary>Marks each interface as "nic=PCI-ADDRESS NAME DRIVER MAC" (read without forking) and names the
    /// adapters at slots 2 and 3 $a and $b.</summary>
    public const string ListAdapters = """
        for n in /sys/class/net/eth*; do
          read -r mac < $n/address
          cd -P $n/device/..; pci=${PWD##*/}; cd -P $n/device/driver; driver=${PWD##*/}; cd /
          mark nic "$pci ${n##*/} $driver $mac"
          case $pci in *:02.0) a=${n##*/} ;; *:03.0) b=${n##*/} ;; esac
        done
        """;

    /// <summary>Marks the virtio interrupt lines, then "done" and powers off (S5).</summary>
    public const string Finish = """
        grep virtio /proc/interrupts | while read -r line; do mark irq "$line"; done
        mark done ok
        poweroff -f
        """;
}

/// <summary>A UDP and a TCP echo server on the host's 127.0.0.1 (free ports), each answering "udp-echo:" or
/// "tcp-echo:" and the line it got, and keeping what it got and from where.</summary>
public sealed class HostEchoServers : IDisposable
{
    private readonly UdpClient _udp = new(new IPEndPoint(IPAddress.Loopback, 0));
    private readonly TcpListener _tcp = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();

    public ConcurrentQueue<string> Received { get; } = new();
    public int UdpPort => ((IPEndPoint)_udp.Client.LocalEndPoint!).Port;
    public int TcpPort => ((IPEndPoint)_tcp.LocalEndpoint).Port;

    public HostEchoServers()
    {
        _tcp.Start();
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                var datagram = await _udp.ReceiveAsync(_stop.Token);
                string text = Encoding.ASCII.GetString(datagram.Buffer);
                Received.Enqueue($"udp {text} from {datagram.RemoteEndPoint.Address}");
                await _udp.SendAsync(Encoding.ASCII.GetBytes("udp-echo:" + text), datagram.RemoteEndPoint, _stop.Token);
            }
        });
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                using var client = await _tcp.AcceptTcpClientAsync(_stop.Token);
                var stream = client.GetStream();
                stream.ReadTimeout = 30_000;
                string line = new StreamReader(stream, Encoding.ASCII).ReadLine() ?? "";
                Received.Enqueue($"tcp {line} from {((IPEndPoint)client.Client.RemoteEndPoint!).Address}");
                stream.Write(Encoding.ASCII.GetBytes($"tcp-echo:{line}\n"));
            }
        });
    }

    public void Dispose()
    {
        _stop.Cancel();
        _udp.Dispose();
        _tcp.Stop();
    }
}

/// <summary>
/// One boot with two user-mode adapters (passt, started by the engine): slot 2 a bare `virtio-net`, slot 3 with
/// `mac=` and a TCP port forward. Through slot 2 Linux takes a DHCP lease and reaches the test's UDP and TCP echo
/// servers on the host's 127.0.0.1 at the gateway address; then slot 2 goes down, slot 3 takes its own lease,
/// and the test connects from the host through the forwarded port to a busybox `nc -l` in the guest.
/// </summary>
public sealed class UserNetworkBoot : LinuxBootFixture
{
    public const int GuestPort = 8080;
    public const string SecondMac = "52:54:00:12:34:56";
    public const string GuestReply = "reply-from-guest";
    public const string HostHello = "hello-from-host";

    private readonly ConcurrentDictionary<string, (NetworkRun Run, string[] ServerLog, string ForwardReply, string Attempts)> _host = new();

    /// <summary>Why user-mode networking cannot run here: the engine runs $XHYVE_PASST, else passt on PATH.</summary>
    public static string? PasstSkipReason =>
        Xhyve.Vmm.Devices.Virtio.Net.PasstBackend.FindPasst() != null ? null
            : "passt is absent ($XHYVE_PASST names no file, or there is no passt on PATH): user-mode networking runs Debian's passt (apt-get install passt; scripts/setup-debian.sh)";

    /// <summary>The boot (once per kernel), with what the host's echo servers got and what the forwarded port answered.</summary>
    public (NetworkRun Run, string[] ServerLog, string ForwardReply, string Attempts) Host(string kind)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.If(PasstSkipReason != null, PasstSkipReason);
        Run(kind);
        return _host[kind];
    }

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        using var servers = new HostEchoServers();
        int hostPort = FreeTcpPort();
        var spec = new LinuxBootSpec($$"""
            {{NetworkScripts.ListAdapters}}
            lease() {
              while read -r line; do mark udhcpc_$2 "$line"; done < /tmp/udhcpc.$1
              got=none; [ -f /tmp/lease.$1 ] && read -r got < /tmp/lease.$1; mark lease_$2 "$got"
            }
            udhcpc -i $a -f -q -n -t 5 -T 3 > /tmp/udhcpc.$a 2>&1
            lease $a a
            set -- $got; gw=$2
            mark udp "$(udpecho $gw {{servers.UdpPort}} udp-from-guest 2>&1)"
            # nc ends when the server's FIN arrives; 124/143 would mean timeout had to end it. Its input (a FIFO held
            # open here) stays open meanwhile: Debian's passt (2023-03) does not pass the host's FIN on once the guest
            # has half-closed (its own capture shows the reply and no FIN), which would leave nc to the timeout.
            mkfifo /tmp/tcp_in
            timeout 30 nc $gw {{servers.TcpPort}} < /tmp/tcp_in > /tmp/tcp 2>&1 &
            nc_pid=$!
            exec 3> /tmp/tcp_in
            echo tcp-from-guest >&3
            wait $nc_pid
            mark tcp_exit $?
            exec 3>&-
            got=""; read -r got < /tmp/tcp; mark tcp "$got"
            ip link set $a down
            udhcpc -i $b -f -q -n -t 5 -T 3 > /tmp/udhcpc.$b 2>&1
            lease $b b
            echo {{GuestReply}} | timeout 120 nc -l -p {{GuestPort}} > /tmp/fwd &
            listener=$!
            mark listening {{GuestPort}}
            wait $listener
            got=""; read -r got < /tmp/fwd
            mark fwd_received "$got"
            {{NetworkScripts.Finish}}
            """)
        {
            Cpus = 2,
            // Two DHCP exchanges and a dozen busybox processes after the boot, all in emulated kernel code.
            Timeout = TimeSpan.FromSeconds(300),
            EngineArgs = ["-s", "2,virtio-net", "-s", $"3,virtio-net,mac={SecondMac},hostfwd=tcp:{hostPort}-:{GuestPort}"],
        };
        var macs = LinuxHarness.AdapterMacs(kernel, dir, spec);
        string reply = "", attempts = "";
        var run = LinuxHarness.Boot(kernel, dir, spec, session =>
        {
            Assert.Equal(GuestPort.ToString(), session.WaitFor("listening"));
            (reply, attempts) = ConnectThroughForward(hostPort);
            session.WaitFor("done");
        });
        _host[kernel.Kind] = (new NetworkRun(run, macs), servers.Received.ToArray(), reply, attempts);
        return run;
    }

    /// <summary>Connects to the forwarded host port, says hello and reads the guest's answer. passt listens from
    /// the start, so a connection can arrive before the guest's nc has bound its port and be reset: it retries
    /// until the guest answers or a minute has passed.</summary>
    private static (string Reply, string Attempts) ConnectThroughForward(int hostPort)
    {
        var log = new List<string>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, hostPort);
                var stream = client.GetStream();
                stream.ReadTimeout = 30_000;
                stream.Write(Encoding.ASCII.GetBytes(HostHello + "\n"));
                client.Client.Shutdown(SocketShutdown.Send);
                string reply = new StreamReader(stream, Encoding.ASCII).ReadToEnd().Trim();
                log.Add(reply.Length > 0 ? "answered" : "closed without an answer");
                if (reply.Length > 0) return (reply, string.Join(", ", log));
            }
            catch (Exception e) when (e is SocketException or IOException) { log.Add(e.Message); }
            if (DateTime.UtcNow > deadline) return ("", string.Join(", ", log));
            Thread.Sleep(1000);
        }
    }

    private static int FreeTcpPort()
    {
        var probe = new TcpListener(IPAddress.Any, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }
}

/// <summary>
/// One boot inside a network namespace of the test's own (`unshare --net`, tests/linux/tap-netns.sh makes tap0
/// 10.0.77.1/24 and tap1 10.0.78.1/24 there and execs the engine): slot 2 `virtio-net,tap=tap0`, slot 3 xhyve's
/// `virtio-tap,tap1`. tap0 is a multiqueue TAP, so with 2 vCPUs its adapter gets two queue pairs (MQ) and Linux uses
/// both; tap1 has one queue, so one pair. The guest gives each adapter its own address, pings the namespace's side of
/// each, and waits until the test has pinged both of its addresses from the namespace.
/// </summary>
public sealed class TapNetworkBoot : LinuxBootFixture
{
    public static readonly (string Tap, string Host, string Guest)[] Links = [("tap0", "10.0.77.1", "10.0.77.2"), ("tap1", "10.0.78.1", "10.0.78.2")];

    private readonly ConcurrentDictionary<string, (NetworkRun Run, string[] HostPings, string Neighbours)> _host = new();

    public (NetworkRun Run, string[] HostPings, string Neighbours) Host(string kind)
    {
        Run(kind);
        return _host[kind];
    }

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        var spec = new LinuxBootSpec($$"""
            {{NetworkScripts.ListAdapters}}
            ip addr add {{Links[0].Guest}}/24 dev $a && ip link set $a up
            ip addr add {{Links[1].Guest}}/24 dev $b && ip link set $b up
            # Receive queues Linux set up per adapter (one per queue pair it uses), counted without forking.
            set -- /sys/class/net/$a/queues/rx-*; mark rxq_a $#
            set -- /sys/class/net/$b/queues/rx-*; mark rxq_b $#
            ping -c 3 -w 30 {{Links[0].Host}} > /tmp/ping_a 2>&1
            ping -c 3 -w 30 {{Links[1].Host}} > /tmp/ping_b 2>&1
            for p in a b; do
              while read -r line; do case $line in *transmitted*) mark ping_$p "$line" ;; esac; done < /tmp/ping_$p
            done
            # ICMP echo requests Linux answered (Icmp InEchos in /proc/net/snmp), read without forking.
            in_echos() {
              names=""
              while read -r proto rest; do
                [ "$proto" = Icmp: ] || continue
                [ -z "$names" ] && { names=$rest; continue; }
                set -- $rest
                for name in $names; do [ "$name" = InEchos ] && { echos=$1; return; }; shift; done
              done < /proc/net/snmp
            }
            mark ready pings
            i=0; in_echos
            while [ "$echos" -lt 6 ] && [ $i -lt 90 ]; do sleep 1; i=$((i + 1)); in_echos; done
            mark in_echos "$echos"
            {{NetworkScripts.Finish}}
            """)
        {
            Cpus = 2,
            Timeout = TimeSpan.FromSeconds(240),
            EngineArgs = ["-s", $"2,virtio-net,tap={Links[0].Tap}", "-s", $"3,virtio-tap,{Links[1].Tap}"],
            Launcher = [.. Unshare, "bash", Path.Combine(EngineProcess.Root, "tests", "linux", "tap-netns.sh"),
                .. Links.Select((l, i) => $"{l.Tap}{(i == 0 ? "+mq" : "")}={l.Host}/24"), "--"],
        };
        var macs = LinuxHarness.AdapterMacs(kernel, dir, spec);
        var pings = new List<string>();
        string neighbours = "";
        var run = LinuxHarness.Boot(kernel, dir, spec, session =>
        {
            Assert.Equal("pings", session.WaitFor("ready"));
            foreach (var link in Links)
            {
                var ping = InNamespace(session.Process.Id, "ping", "-c", "3", "-w", "60", link.Guest);
                pings.Add($"{link.Guest}: exit {ping.ExitCode}: {ping.Stdout}{ping.Stderr}");
            }
            var neigh = InNamespace(session.Process.Id, "ip", "neigh", "show");
            neighbours = neigh.Stdout + neigh.Stderr;
            session.WaitFor("done");
        });
        _host[kernel.Kind] = (new NetworkRun(run, macs), pings.ToArray(), neighbours);
        return run;
    }

    /// <summary>unshare --net needs CAP_SYS_ADMIN; without root, a user namespace maps us to root in it.</summary>
    private static string[] Unshare => Environment.IsPrivilegedProcess ? ["unshare", "--net", "--"] : ["unshare", "--user", "--map-root-user", "--net", "--"];

    /// <summary>Runs a host program in the engine's network namespace (nsenter into the namespace of its process).</summary>
    private static EngineRun InNamespace(int pid, params string[] command) =>
        EngineProcess.RunProgram("nsenter", [$"--target={pid}", .. Environment.IsPrivilegedProcess ? Array.Empty<string>() : ["--user"], "--net", "--", .. command], 90);
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxNetworkTests(UserNetworkBoot user, TapNetworkBoot tap, ITestOutputHelper log)
    : IClassFixture<UserNetworkBoot>, IClassFixture<TapNetworkBoot>
{
    /// <summary>The host's IPv4 address and prefix on its default-route interface, and its default gateway:
    /// what passt hands the guest by DHCP with its defaults.</summary>
    private static (string AddressWithPrefix, string Gateway) HostDefaultRoute()
    {
        var route = EngineProcess.RunProgram("ip", ["-4", "route", "show", "default"], 10).Stdout;
        var m = Regex.Match(route, @"default via (\S+) dev (\S+)");
        Assert.True(m.Success, $"the host has no IPv4 default route for passt to copy: {route}");
        var addr = EngineProcess.RunProgram("ip", ["-4", "-o", "addr", "show", "dev", m.Groups[2].Value], 10).Stdout;
        return (Regex.Match(addr, @"inet (\S+)").Groups[1].Value, m.Groups[1].Value);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioNet_LinuxsDriverProbesEachAdapter_WithTheMacThatXhyveMPrints(string kernel)
    {
        var (net, _, _, _) = user.Host(kernel);
        Assert.Equal(2, net.Macs.Count);
        var bare = net.Nic(2);
        Assert.Equal("virtio_net", bare.Driver);
        Assert.Equal(net.Macs[0], bare.Mac);
        var second = net.Nic(3);
        Assert.Equal("virtio_net", second.Driver);
        Assert.Equal(UserNetworkBoot.SecondMac, net.Macs[1]);
        Assert.Equal(UserNetworkBoot.SecondMac, second.Mac);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void UserNetworking_UdhcpcGetsALeaseFromPasst_WithTheHostsAddressAndGateway(string kernel)
    {
        var (net, _, _, _) = user.Host(kernel);
        var (address, gateway) = HostDefaultRoute();
        log.WriteLine($"lease: {net.Run.Marker("lease_a")}; host: {address} via {gateway}");
        Assert.Equal((address, gateway), net.Lease("lease_a"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void UserNetworking_GuestReachesUdpAndTcpServersOnTheHostsLoopback_AtTheGatewayAddress(string kernel)
    {
        var (net, serverLog, _, _) = user.Host(kernel);
        log.WriteLine($"guest: udp '{net.Run.Marker("udp")}', tcp '{net.Run.Marker("tcp")}' (nc exit {net.Run.Marker("tcp_exit")}); host servers: {string.Join(" | ", serverLog)}");
        Assert.Equal("udp-echo:udp-from-guest", net.Run.Marker("udp"));
        Assert.Equal("tcp-echo:tcp-from-guest", net.Run.Marker("tcp"));
        Assert.Equal("0", net.Run.Marker("tcp_exit")); // the server's close reached the guest: nc ended by itself
        Assert.Contains("udp udp-from-guest from 127.0.0.1", serverLog);
        Assert.Contains("tcp tcp-from-guest from 127.0.0.1", serverLog);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void HostForward_AConnectionToTheHostPort_ReachesAListenerInTheGuest_AndItsAnswerComesBack(string kernel)
    {
        var (net, _, reply, attempts) = user.Host(kernel);
        log.WriteLine($"host connections: {attempts}");
        Assert.Equal(UserNetworkBoot.GuestReply, reply);
        Assert.Equal(UserNetworkBoot.HostHello, net.Run.Marker("fwd_received"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void TwoUserAdapters_EachGetsALeaseFromItsOwnPasst_AndKeepsItsOwnMac(string kernel)
    {
        var (net, _, _, _) = user.Host(kernel);
        // The second adapter's lease came while the first one was down: its own passt answered. passt hands every
        // guest the host's address, so both leases carry the same address; the MACs differ.
        Assert.Equal(HostDefaultRoute(), net.Lease("lease_b"));
        Assert.Equal(net.Lease("lease_a"), net.Lease("lease_b"));
        Assert.NotEqual(net.Nic(2).Mac, net.Nic(3).Mac);
        Assert.NotEqual(net.Nic(2).Interface, net.Nic(3).Interface);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void UserNetworking_BothAdaptersReceiveQueuesTakeMsiXInterrupts_AndTheGuestPowersOff(string kernel)
    {
        var (net, _, _, _) = user.Host(kernel);
        log.WriteLine(net.Timings("init", "lease_a", "udp", "tcp", "lease_b", "listening", "fwd_received", "done"));
        net.AssertReceiveQueuesTookInterrupts(2);
        Assert.Equal("ok", net.Run.Marker("done"));
        net.Run.AssertExit(0);
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Tap_GuestPingsTheNamespacesSideOfBothTaps(string kernel)
    {
        var (net, _, _) = tap.Host(kernel);
        Assert.StartsWith("3 packets transmitted, 3 packets received", net.Run.Marker("ping_a"));
        Assert.StartsWith("3 packets transmitted, 3 packets received", net.Run.Marker("ping_b"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Tap_TheNamespacePingsTheGuestThroughEachTap_AndLinuxAnswersEveryEcho(string kernel)
    {
        var (net, pings, _) = tap.Host(kernel);
        log.WriteLine(string.Join("\n", pings));
        Assert.Equal(2, pings.Length);
        Assert.All(pings, p => Assert.Matches(@": exit 0: (.|\n)*3 packets transmitted, 3 received", p));
        Assert.True(int.Parse(net.Run.Marker("in_echos")) >= 6, $"Linux counted {net.Run.Marker("in_echos")} ICMP echo requests");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Tap_TwoAdapters_TapOptionAndXhyvesVirtioTap_EachHasItsOwnAddressAndMacOnTheWire(string kernel)
    {
        var (net, _, neighbours) = tap.Host(kernel);
        log.WriteLine($"-M: {string.Join(" ", net.Macs)}; namespace neighbours:\n{neighbours}");
        Assert.Equal(2, net.Macs.Count);
        Assert.NotEqual(net.Macs[0], net.Macs[1]);
        for (int i = 0; i < 2; i++)
        {
            var (tapName, _, guest) = TapNetworkBoot.Links[i];
            var nic = net.Nic(2 + i);
            Assert.Equal("virtio_net", nic.Driver);
            Assert.Equal(net.Macs[i], nic.Mac);
            // The namespace learnt each guest address behind its own TAP with that adapter's MAC.
            Assert.Matches($@"(?m)^{Regex.Escape(guest)} dev {tapName} lladdr {Regex.Escape(net.Macs[i])} ", neighbours);
        }
    }

    /// <summary>MQ: on the multiqueue tap0 with 2 vCPUs Linux's virtio_net finds two queue pairs and uses both
    /// (VQ_PAIRS_SET), each receive queue with its own MSI-X vector; the single-queue tap1 gives one pair.</summary>
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Tap_MultiqueueTap_GivesLinuxAQueuePairPerVcpu_ASingleQueueTapOne(string kernel)
    {
        var (net, _, _) = tap.Host(kernel);
        Assert.Equal("2", net.Run.Marker("rxq_a"));
        Assert.Equal("1", net.Run.Marker("rxq_b"));
        Assert.Contains(net.Run.All("irq"), l => Regex.IsMatch(l, @"virtio\d+-input\.1"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Tap_BothAdaptersReceiveQueuesTakeMsiXInterrupts_AndTheGuestPowersOff(string kernel)
    {
        var (net, _, _) = tap.Host(kernel);
        log.WriteLine(net.Timings("init", "ping_a", "ping_b", "ready", "in_echos", "done"));
        net.AssertReceiveQueuesTookInterrupts(2);
        Assert.Equal("ok", net.Run.Marker("done"));
        net.Run.AssertExit(0);
    }
}
