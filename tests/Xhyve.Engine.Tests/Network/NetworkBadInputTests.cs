using System.Net;
using System.Net.Sockets;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Engine.Tests.Network;

/// <summary>Network adapters on bad input: one line naming the device and the problem, exit 1, no guest run and no
/// passt left behind; and -M, which prints the MACs and runs nothing.</summary>
public sealed class NetworkBadInputTests
{
    private static EngineRun RunHello(IReadOnlyDictionary<string, string>? environment, params string[] net)
    {
        string[] args = ["-A", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", .. net, "-f", $"multiboot,{EngineProcess.Guest("hello")}"];
        if (environment == null) return EngineProcess.Run(args);
        using var p = EngineProcess.StartProgram(EngineProcess.Executable, args, environment);
        Assert.True(p.WaitForExit(60_000), "the engine did not exit");
        p.WaitForOutput(TimeSpan.FromSeconds(5));
        return new EngineRun(p.ExitCode, p.Output, p.Stderr, TimeSpan.Zero);
    }

    private static void AssertRefused(EngineRun run, params string[] fragments)
    {
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.StartsWith("xhyve: ", run.Stderr);
        foreach (var f in fragments) Assert.Contains(f, run.Stderr);
        Assert.DoesNotContain("Hello from", run.Stdout);
    }

    [Theory]
    [InlineData("2,virtio-net,bogus", "-s 0:2:0,virtio-net,bogus: bogus: unknown network option")]
    [InlineData("2,virtio-net,mac=01:00:5e:00:00:01", "a multicast address")]
    [InlineData("2,virtio-net,mac=zz", "mac=zz: expected six hex pairs")]
    [InlineData("2,virtio-net,tap=tap0,hostfwd=tcp:80-:80", "port forwards are for user-mode networking")]
    [InlineData("2,virtio-net,hostfwd=sctp:1-:2", "protocol 'sctp' is not tcp or udp")]
    [InlineData("2,virtio-net,hostfwd=tcp:70000-:80", "host port '70000' is not a port")]
    [InlineData("2,virtio-net,user,tap=tap0", "the backend was already given (user)")]
    [InlineData("2,virtio-tap", "no TAP device given")]
    [InlineData("2,virtio-net,tap=a/b", "tap=a/b: not a network interface name")]
    public void BadNetworkOption_IsOneLineNamingTheDevice(string device, string message)
    {
        var run = RunHello(null, "-s", device);
        AssertRefused(run, message);
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
    }

    [Fact]
    public void TwoAdaptersWithOneMac_AreRefusedNamingBoth()
    {
        var run = RunHello(null, "-s", "2,virtio-net,mac=52:54:00:00:00:01", "-s", "3,virtio-net,mac=52:54:00:00:00:01");
        AssertRefused(run, "-s 0:3:0,virtio-net,mac=52:54:00:00:00:01: MAC address 52:54:00:00:00:01 is already used by -s 0:2:0,virtio-net");
    }

    [SkippableFact]
    public void MissingPasst_IsOneLineNamingTheDevice_AndNothingRuns()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = RunHello(new Dictionary<string, string> { ["XHYVE_PASST"] = "/nonexistent/passt" }, "-s", "2,virtio-net");
        AssertRefused(run, "-s 0:2:0,virtio-net: user networking needs passt, which was not found");
    }

    [SkippableFact]
    public void ForwardedHostPortInUse_IsOneLine_AndNoPasstIsLeft()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var taken = new UdpClient(new IPEndPoint(IPAddress.Any, 0));
        int port = ((IPEndPoint)taken.Client.LocalEndPoint!).Port;
        var run = RunHello(null, "-s", $"2,virtio-net,hostfwd=udp:{port}-:7");
        AssertRefused(run, $"hostfwd=udp:{port}-:7: host port udp:{port} cannot be used");
    }

    [SkippableFact]
    public void InterfaceThatIsNotATap_IsOneLine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(File.Exists("/dev/net/tun"), "/dev/net/tun is absent: no TAP can be opened on this host");
        // "lo" exists in every namespace and is no TAP: TUNSETIFF refuses it without creating anything.
        var run = RunHello(null, "-s", "2,virtio-net,tap=lo");
        AssertRefused(run, "-s 0:2:0,virtio-net,tap=lo: tap=lo: ");
    }

    [Fact]
    public void PrintMacs_PrintsEachAdaptersMacInSlotOrder_AndRunsNothing()
    {
        var uuid = Guid.Parse("3f1c7a52-9d0e-4b8a-a6f1-0c2b5e9d7a11");
        var run = EngineProcess.Run(["-M", "-U", uuid.ToString(), "-s", "2,virtio-net", "-s", "3,virtio-tap,tap7,mac=52:54:00:ab:cd:ef",
            "-s", "4:1,virtio-net,tap=tap9", "-f", "kexec,/nonexistent"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(
            [$"MAC: {MacAddress.Derive(uuid, new PciAddress(0, 2, 0))}", "MAC: 52:54:00:ab:cd:ef", $"MAC: {MacAddress.Derive(uuid, new PciAddress(0, 4, 1))}"],
            run.Stdout.TrimEnd().Split('\n'));
        Assert.Empty(run.Stderr);
    }
}
