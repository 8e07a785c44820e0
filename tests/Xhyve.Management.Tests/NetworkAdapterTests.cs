using Xhyve.Management.Model;
using Xhyve.Management.Store;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Management.Tests;

/// <summary>Network adapters in VM objects: the engine arguments they become, every spelling of the command line they
/// come from, the MAC address shown before the VM starts, what is refused, and vm.json files of the older form.</summary>
public sealed class NetworkAdapterTests : IDisposable
{
    private static readonly Guid Id = Guid.Parse("6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11");
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-net").FullName;

    public void Dispose() => Directory.Delete(_root, true);

    private static VirtualMachine Vm(params VmNetworkAdapter[] adapters)
    {
        var vm = new VirtualMachine { Name = "net", Id = Id, KernelPath = "/vm/vmlinuz" };
        vm.NetworkAdapters.AddRange(adapters);
        return vm;
    }

    private static string SlotArgument(VirtualMachine vm, int slot)
    {
        var args = VmArguments.ToArguments(vm, null);
        return args.Where((a, i) => i > 0 && args[i - 1] == "-s").Single(a => a.StartsWith($"0:{slot}:0,", StringComparison.Ordinal));
    }

    [Fact]
    public void AUserModeAdapter_BecomesVirtioNetUser()
    {
        var vm = Vm(new VmNetworkAdapter { Slot = 3 });
        Assert.Equal("0:3:0,virtio-net,user", SlotArgument(vm, 3));
    }

    [Fact]
    public void AUserModeAdapter_WithAMacAndForwards_GetsThemInTheEngineSpelling()
    {
        var vm = Vm(new VmNetworkAdapter { Slot = 4, MacAddress = "52:54:00:12:34:56", PortForwards = ["tcp:8080:80", "udp:127.0.0.1:5353:53"] });
        Assert.Equal("0:4:0,virtio-net,user,mac=52:54:00:12:34:56,hostfwd=tcp:8080-:80,hostfwd=udp:127.0.0.1:5353-:53", SlotArgument(vm, 4));
    }

    [Fact]
    public void ATapAdapter_BecomesVirtioNetTap()
    {
        var vm = Vm(new VmNetworkAdapter { Slot = 5, Mode = NetBackendKind.Tap, TapName = "tap0", MacAddress = "02:00:00:00:00:01" });
        Assert.Equal("0:5:0,virtio-net,tap=tap0,mac=02:00:00:00:00:01", SlotArgument(vm, 5));
    }

    [Fact]
    public void TheMacShownBeforeTheFirstStart_IsTheOneTheEngineDerives()
    {
        var adapter = new VmNetworkAdapter { Slot = 7 };
        var vm = Vm(adapter);
        Assert.Equal(MacAddressSource.Stable, adapter.MacAddressSource);
        Assert.Equal(MacAddress.Derive(Id, new PciAddress(0, 7, 0)), adapter.EffectiveMacAddress(vm.Id));
        // What the engine itself would give the adapter of the line the VM becomes (what xhyve -M prints).
        var spec = CommandLineParser.Parse(VmArguments.ToArguments(vm, null)).Spec;
        Assert.Equal(adapter.EffectiveMacAddress(vm.Id), Assert.Single(spec.NetworkAdapters).Mac);
        adapter.MacAddress = "52:54:00:aa:bb:cc";
        Assert.Equal((MacAddressSource.Static, "52:54:00:aa:bb:cc"), (adapter.MacAddressSource, adapter.EffectiveMacAddress(vm.Id).ToString()));
    }

    public static TheoryData<string, NetBackendKind, string?, string?, string[]> Spellings => new()
    {
        { "virtio-net", NetBackendKind.User, null, null, [] },
        { "virtio-net,user", NetBackendKind.User, null, null, [] },
        { "virtio-net,mac=52:54:00:12:34:56", NetBackendKind.User, null, "52:54:00:12:34:56", [] },
        { "virtio-net,user,mac=52-54-00-AB-CD-EF,hostfwd=tcp:8080-:80", NetBackendKind.User, null, "52:54:00:ab:cd:ef", ["tcp:8080:80"] },
        { "virtio-net,hostfwd=tcp:2222-:22,hostfwd=udp:127.0.0.1:5353-:53,hostfwd=tcp:[::1]:8443-:443", NetBackendKind.User, null, null, ["tcp:2222:22", "udp:127.0.0.1:5353:53", "tcp:[::1]:8443:443"] },
        { "virtio-net,hostfwd=tcp:8080:80", NetBackendKind.User, null, null, ["tcp:8080:80"] },
        { "virtio-net,tap=tap3", NetBackendKind.Tap, "tap3", null, [] },
        { "virtio-net,tap=tap3,mac=02:11:22:33:44:55", NetBackendKind.Tap, "tap3", "02:11:22:33:44:55", [] },
        { "virtio-tap,tap0", NetBackendKind.Tap, "tap0", null, [] },
        { "virtio-tap,tap1,mac=52:54:00:12:34:56", NetBackendKind.Tap, "tap1", "52:54:00:12:34:56", [] },
        { "virtio-net,tap=tap4,queues=4", NetBackendKind.Tap, "tap4", null, [] },
    };

    [Theory]
    [MemberData(nameof(Spellings))]
    public void EverySpelling_BecomesTheTypedAdapter_AndRoundTrips(string device, NetBackendKind mode, string? tap, string? mac, string[] forwards)
    {
        string[] line = ["-U", Id.ToString(), "-s", "3," + device, "-f", "kexec,/vm/vmlinuz"];
        var vm = VmArguments.FromArguments(line, "net").Vm;
        var adapter = Assert.Single(vm.NetworkAdapters);
        Assert.Equal((3, mode, tap, mac), (adapter.Slot, adapter.Mode, adapter.TapName, adapter.MacAddress));
        Assert.Equal(forwards, adapter.PortForwards);
        // The engine line the VM becomes reads back as the same VM, and the engine parses it into the same options.
        var args = VmArguments.ToArguments(vm, null);
        var again = VmArguments.FromArguments(args, "net").Vm;
        again.CreatedUtc = vm.CreatedUtc;
        Assert.Equal(VmJson.Serialize(vm), VmJson.Serialize(again));
        var original = ((VirtioNetSpec)CommandLineParser.ParsePciDevice("3," + device).Device).Options;
        var generated = ((VirtioNetSpec)CommandLineParser.ParsePciDevice(SlotArgument(vm, 3)).Device).Options;
        Assert.Equal(original.ToString(), generated.ToString());
    }

    [Fact]
    public void QueuePairs_RoundTripAsTheEnginesQueuesOption()
    {
        var vm = VmArguments.FromArguments(["-s", "3,virtio-tap,tap0,queues=2", "-f", "kexec,/k"], "mq").Vm;
        Assert.Equal(2, Assert.Single(vm.NetworkAdapters).QueuePairs);
        Assert.Contains(":3:0,virtio-net,tap=tap0,queues=2", string.Join(" ", VmArguments.ToArguments(vm, null)));
    }

    [Fact]
    public void SeveralAdapters_AreNumberedInLineOrder()
    {
        var vm = VmArguments.FromArguments(["-s", "2,virtio-net", "-s", "3,virtio-tap,tap0", "-f", "kexec,/k"], "two").Vm;
        Assert.Equal(["Network Adapter 1", "Network Adapter 2"], vm.NetworkAdapters.Select(n => n.Name));
    }

    [Theory]
    [InlineData("3,virtio-net,mac=01:00:5e:00:00:01", "mac=01:00:5e:00:00:01: a multicast address")]
    [InlineData("3,virtio-net,hostfwd=tcp:99999-:80", "host port '99999' is not a port")]
    [InlineData("3,virtio-net,tap=tap0,hostfwd=tcp:8080-:80", "port forwards are for user-mode networking")]
    [InlineData("3,virtio-net,user,tap=tap0", "the backend was already given")]
    [InlineData("3,virtio-tap", "no TAP device given")]
    [InlineData("3,virtio-net,colour=blue", "colour=blue: unknown network option")]
    public void BadAdaptersOnTheLine_AreRefused_NamingTheDeviceAndTheValue(string device, string expected)
    {
        var e = Assert.Throws<VmDefinitionException>(() => VmArguments.FromArguments(["-s", device, "-f", "kexec,/k"]));
        Assert.Contains(expected, e.Message);
        Assert.Contains(device.Split(',')[1], e.Message);
    }

    [Theory]
    [InlineData("MacAddress", "01:02:03:04:05:06", "network adapter 'lan': mac=01:02:03:04:05:06: a multicast address")]
    [InlineData("MacAddress", "00:00:00:00:00:00", "network adapter 'lan': mac=00:00:00:00:00:00: the all-zero address")]
    [InlineData("MacAddress", "52:54:00:12:34", "network adapter 'lan': mac=52:54:00:12:34: expected six hex pairs")]
    [InlineData("MacAddress", "52:54:00:12:34:56,user", "network adapter 'lan': MacAddress '52:54:00:12:34:56,user': cannot contain ','")]
    [InlineData("PortForwards", "tcp:8080", "network adapter 'lan': hostfwd=tcp:8080: expected PROTOCOL:HOSTPORT-:GUESTPORT")]
    [InlineData("PortForwards", "sctp:1:2", "network adapter 'lan': hostfwd=sctp:1:2: protocol 'sctp' is not tcp or udp")]
    [InlineData("PortForwards", "tcp:8080:80,mac=02:00:00:00:00:01", "network adapter 'lan': PortForwards 'tcp:8080:80,mac=02:00:00:00:00:01': cannot contain ','")]
    [InlineData("TapName", "tap0", "network adapter 'lan': TapName 'tap0': only an adapter in Mode Tap has a TAP device")]
    public void BadUserModeSettings_AreRefused_NamingTheAdapterAndTheValue(string setting, string value, string expected)
    {
        var adapter = new VmNetworkAdapter { Name = "lan", Slot = 2 };
        switch (setting)
        {
            case "MacAddress": adapter.MacAddress = value; break;
            case "PortForwards": adapter.PortForwards.Add(value); break;
            default: adapter.TapName = value; break;
        }
        var vm = Vm(adapter);
        Assert.Contains(vm.Validate(), p => p.StartsWith(expected, StringComparison.Ordinal));
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmArguments.ToArguments(vm, null)).Message);
    }

    [Theory]
    [InlineData(null, new string[0], "network adapter 'lan': Mode Tap needs a TapName")]
    [InlineData("tap/0", new string[0], "network adapter 'lan': tap=tap/0: not a network interface name")]
    [InlineData("a-name-far-too-long", new string[0], "network adapter 'lan': tap=a-name-far-too-long: not a network interface name")]
    [InlineData("tap0", new[] { "tcp:8080:80" }, "network adapter 'lan': hostfwd=tcp:8080-:80: port forwards are for user-mode networking")]
    public void BadTapSettings_AreRefused_NamingTheAdapterAndTheValue(string? tap, string[] forwards, string expected)
    {
        var vm = Vm(new VmNetworkAdapter { Name = "lan", Slot = 2, Mode = NetBackendKind.Tap, TapName = tap, PortForwards = [.. forwards] });
        Assert.Contains(vm.Validate(), p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void TwoAdapters_CannotShareAName_AMac_ATapDevice_OrAHostPort()
    {
        var vm = Vm(
            new VmNetworkAdapter { Name = "a", Slot = 2, MacAddress = "52:54:00:00:00:01", PortForwards = ["tcp:8080:80"] },
            new VmNetworkAdapter { Name = "a", Slot = 3, MacAddress = "52:54:00:00:00:01", PortForwards = ["tcp:8080:81", "udp:8080:80"] },
            new VmNetworkAdapter { Name = "t1", Slot = 4, Mode = NetBackendKind.Tap, TapName = "tap0" },
            new VmNetworkAdapter { Name = "t2", Slot = 5, Mode = NetBackendKind.Tap, TapName = "tap0", MacAddress = MacAddress.Derive(Id, new PciAddress(0, 4, 0)).ToString() });
        var problems = vm.Validate();
        Assert.Contains("network adapter 'a': another adapter of the VM has that name", problems);
        Assert.Contains("network adapter 'a': MAC address 52:54:00:00:00:01 is already used by network adapter 'a'", problems);
        Assert.Contains("network adapter 'a': host port tcp:8080 is already used by network adapter 'a'", problems);
        Assert.DoesNotContain(problems, p => p.Contains("udp:8080"));   // another protocol is another port
        Assert.Contains("network adapter 't2': TAP device tap0 is already used by network adapter 't1'", problems);
        // A static address equal to another adapter's stable one would give the guest two NICs with one MAC.
        Assert.Contains(problems, p => p.StartsWith("network adapter 't2': MAC address ", StringComparison.Ordinal) && p.EndsWith("is already used by network adapter 't1'", StringComparison.Ordinal));
    }

    [Fact]
    public void TheTypedFields_AreWhatVmJsonHolds_AndRoundTrip()
    {
        var vm = Vm(new VmNetworkAdapter { Name = "lan", Slot = 2, Mode = NetBackendKind.Tap, TapName = "tap0", MacAddress = "52:54:00:12:34:56" },
            new VmNetworkAdapter { Name = "wan", Slot = 3, PortForwards = ["tcp:8080:80"] });
        string json = VmJson.Serialize(vm);
        Assert.Contains("\"mode\": \"Tap\"", json);
        Assert.Contains("\"tapName\": \"tap0\"", json);
        Assert.Contains("\"portForwards\": [\n        \"tcp:8080:80\"\n      ]", json.ReplaceLineEndings("\n"));
        Assert.DoesNotContain("emulation", json);
        Assert.Equal(json, VmJson.Serialize(VmJson.Deserialize(json, "vm.json")));
    }

    [Theory]
    [InlineData("\"mode\": 1", "at $.networkAdapters[0].mode")]
    [InlineData("\"mode\": \"Bridge\"", "at $.networkAdapters[0].mode")]
    [InlineData("\"portForwards\": null", "at $.networkAdapters[0].portForwards")]
    public void AModeOrForwardListThatIsNotOne_IsRefusedWhenRead_NamingTheField(string field, string expected)
    {
        string json = $"{{\"name\": \"x\", \"kernelPath\": \"/k\", \"networkAdapters\": [{{\"name\": \"a\", \"slot\": 2, {field}}}]}}";
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmJson.Deserialize(json, "vm.json")).Message);
    }

    [Fact]
    public void ANullPortForward_IsRefusedWhenRead_NamingTheEntry()
    {
        const string json = "{\"name\": \"x\", \"kernelPath\": \"/k\", \"networkAdapters\": [{\"name\": \"a\", \"slot\": 2, \"portForwards\": [\"tcp:1:2\", null]}]}";
        Assert.Contains("field 'networkAdapters[0].portForwards[1]': null", Assert.Throws<VmDefinitionException>(() => VmJson.Deserialize(json, "vm.json")).Message);
    }

    // vm.json as the module wrote it before the typed fields (emulation, options, macAddress).
    private const string OldVmJson = """
        {
          "name": "old",
          "id": "6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11",
          "processorCount": 1,
          "memoryStartupBytes": 268435456,
          "acpi": true,
          "kernelPath": "/vm/vmlinuz",
          "multibootModules": [],
          "disks": [],
          "networkAdapters": [
            {
              "name": "Network Adapter",
              "slot": 2,
              "emulation": "virtio-net",
              "macAddress": "52:54:00:12:34:56"
            },
            {
              "name": "lan",
              "slot": 3,
              "emulation": "virtio-tap",
              "options": "tap0"
            }
          ],
          "extraArguments": [],
          "createdUtc": "2026-11-01T10:00:00Z",
          "version": 3
        }
        """;

    [Fact]
    public void AnOlderVmJson_StillLoads_AndIsWrittenInTheNewFormOnItsNextSave()
    {
        var store = new VmStore(_root);
        store.Create(new VirtualMachine { Name = "old", KernelPath = "/vm/vmlinuz" });
        string file = Path.Combine(store.FolderOf("old"), VmStore.DefinitionFile);
        File.WriteAllText(file, OldVmJson);
        var vm = store.Get("old");
        Assert.Equal([(NetBackendKind.User, (string?)null, (string?)"52:54:00:12:34:56", 2), (NetBackendKind.Tap, "tap0", null, 3)],
            vm.NetworkAdapters.Select(n => (n.Mode, n.TapName, n.MacAddress, n.Slot)));
        Assert.Equal("0:3:0,virtio-net,tap=tap0", SlotArgument(vm, 3));
        store.Update("old", v => v.ProcessorCount = 2);
        string saved = File.ReadAllText(file);
        Assert.DoesNotContain("\"emulation\"", saved);
        Assert.Contains("\"mode\": \"Tap\"", saved);
        Assert.Equal("tap0", store.Get("old").NetworkAdapters[1].TapName);
    }

    [Theory]
    [InlineData("\"emulation\": \"virtio-tap\",", "\"emulation\": \"e1000\",", "field 'networkAdapters[1]': emulation 'e1000': not virtio-net or virtio-tap")]
    [InlineData("\"options\": \"tap0\"", "\"options\": \"tap0,mac=01:00:00:00:00:01\"", "field 'networkAdapters[1]': options 'tap0,mac=01:00:00:00:00:01': mac=01:00:00:00:00:01: a multicast address")]
    [InlineData("\"options\": \"tap0\"", "\"options\": \"tap0\", \"tapName\": \"tap1\"", "field 'networkAdapters[1]': 'emulation'/'options' (the older form) cannot be mixed")]
    public void AnOlderVmJsonThatDoesNotDescribeAnAdapter_IsRefused_NamingTheFileAndTheField(string find, string replace, string expected)
    {
        var e = Assert.Throws<VmDefinitionException>(() => VmJson.Deserialize(OldVmJson.Replace(find, replace), "/store/old/vm.json"));
        Assert.StartsWith("/store/old/vm.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
