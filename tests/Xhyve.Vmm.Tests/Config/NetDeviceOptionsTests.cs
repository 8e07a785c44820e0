using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Vmm.Tests.Config;

/// <summary>Network adapter options: parsing and printing, errors that name the option, port forwards, the stable
/// MAC, and the conflicts between adapters that only the whole VM can see.</summary>
public sealed class NetDeviceOptionsTests
{
    private static readonly string Kernel = typeof(NetDeviceOptionsTests).Assembly.Location;

    [Theory]
    [InlineData(null, "user")]
    [InlineData("", "user")]
    [InlineData("user", "user")]
    [InlineData("tap=tap0", "tap=tap0")]
    [InlineData("mac=52:54:00:12:34:56", "user,mac=52:54:00:12:34:56")]
    [InlineData("mac=52-54-00-AB-CD-EF,user", "user,mac=52:54:00:ab:cd:ef")]
    [InlineData("user,hostfwd=tcp:8080-:80", "user,hostfwd=tcp:8080-:80")]
    [InlineData("hostfwd=tcp:8080:80,hostfwd=udp:127.0.0.1:5353-:53,hostfwd=tcp:[::1]:2222-:22",
        "user,hostfwd=tcp:8080-:80,hostfwd=udp:127.0.0.1:5353-:53,hostfwd=tcp:[::1]:2222-:22")]
    [InlineData("tap=vm-net.1,mac=02:00:00:00:00:01", "tap=vm-net.1,mac=02:00:00:00:00:01")]
    [InlineData("user,,mac=02:00:00:00:00:01,", "user,mac=02:00:00:00:00:01")]
    public void Parse_ThenToString_GivesTheCanonicalSpelling_WhichParsesToTheSame(string? text, string canonical)
    {
        var o = NetDeviceOptions.Parse(text);
        Assert.Equal(canonical, o.ToString());
        var again = NetDeviceOptions.Parse(o.ToString());
        Assert.Equal(canonical, again.ToString());
        Assert.Equal(o.Backend, again.Backend);
        Assert.Equal(o.TapName, again.TapName);
        Assert.Equal(o.Mac, again.Mac);
        Assert.Equal(o.PortForwards, again.PortForwards);
    }

    [Fact]
    public void Parse_FillsTheTypedFields()
    {
        var o = NetDeviceOptions.Parse("mac=02:00:00:00:00:09,hostfwd=tcp:8080-:80,hostfwd=udp:5353-:53");
        Assert.Equal(NetBackendKind.User, o.Backend);
        Assert.Null(o.TapName);
        Assert.Equal(new MacAddress(0x02_00_00_00_00_09), o.Mac);
        Assert.Equal([new PortForward("tcp", null, 8080, 80), new PortForward("udp", null, 5353, 53)], o.PortForwards);
        var tap = NetDeviceOptions.Parse("tap=tap7");
        Assert.Equal((NetBackendKind.Tap, "tap7"), (tap.Backend, tap.TapName));
        Assert.Null(tap.Mac);
        Assert.Empty(tap.PortForwards);
    }

    [Theory]
    [InlineData("tap0", "tap=tap0")]
    [InlineData("tap3,mac=02:00:00:00:00:03", "tap=tap3,mac=02:00:00:00:00:03")]
    public void XhyveVirtioTap_TakesTheTapNameFirst_AndPrintsAsVirtioNet(string text, string canonical)
    {
        var o = NetDeviceOptions.Parse(text, xhyveTap: true);
        Assert.Equal(NetBackendKind.Tap, o.Backend);
        Assert.Equal(canonical, o.ToString());
        Assert.Equal(canonical, NetDeviceOptions.Parse(o.ToString()).ToString());
    }

    [Theory]
    [InlineData("bogus", "bogus: unknown network option")]
    [InlineData("user=1", "user=1: unknown network option")]
    [InlineData("tap", "tap: unknown network option")]
    [InlineData("mac", "mac: unknown network option")]
    [InlineData("user,tap=tap0", "tap=tap0: the backend was already given (user)")]
    [InlineData("tap=tap0,tap=tap1", "tap=tap1: the backend was already given (tap=tap0)")]
    [InlineData("user,user", "user: the backend was already given (user)")]
    [InlineData("tap=tap0,hostfwd=tcp:8080-:80", "hostfwd=tcp:8080-:80: port forwards are for user-mode networking")]
    [InlineData("hostfwd=tcp:8080-:80,tap=tap0", "hostfwd=tcp:8080-:80: port forwards are for user-mode networking")]
    [InlineData("hostfwd=tcp:8080-:80,hostfwd=tcp:8080-:81", "hostfwd=tcp:8080-:81: host port tcp:8080 is already forwarded (hostfwd=tcp:8080-:80)")]
    [InlineData("hostfwd=udp:127.0.0.1:53-:53,hostfwd=udp:127.0.0.1:53:5353", "host port udp:53 is already forwarded")]
    [InlineData("mac=52:54:00:12:34", "mac=52:54:00:12:34: expected six hex pairs")]
    [InlineData("mac=52:54:00:12:34:5g", "mac=52:54:00:12:34:5g: expected six hex pairs")]
    [InlineData("mac=525400123456", "mac=525400123456: expected six hex pairs")]
    [InlineData("mac=01:00:5e:00:00:01", "mac=01:00:5e:00:00:01: a multicast address")]
    [InlineData("mac=ff:ff:ff:ff:ff:ff", "mac=ff:ff:ff:ff:ff:ff: a multicast address")]
    [InlineData("mac=00:00:00:00:00:00", "mac=00:00:00:00:00:00: the all-zero address")]
    [InlineData("mac=02:00:00:00:00:01,mac=02:00:00:00:00:02", "mac=02:00:00:00:00:02: mac=02:00:00:00:00:01 was already given")]
    [InlineData("hostfwd=tcp:0-:80", "hostfwd=tcp:0-:80: host port '0' is not a port")]
    [InlineData("hostfwd=tcp:65536-:80", "host port '65536' is not a port")]
    [InlineData("hostfwd=tcp:80-:0", "guest port '0' is not a port")]
    [InlineData("hostfwd=tcp:80-:x", "guest port 'x' is not a port")]
    [InlineData("hostfwd=tcp:+80-:80", "host port '+80' is not a port")]
    [InlineData("hostfwd=tcp:-80-:80", "is not a port")]
    [InlineData("hostfwd=tcp:99999999999-:80", "host port '99999999999' is not a port")]
    [InlineData("hostfwd=sctp:80-:80", "hostfwd=sctp:80-:80: protocol 'sctp' is not tcp or udp")]
    [InlineData("hostfwd=80-:80", "hostfwd=80-:80: protocol '80-' is not tcp or udp")]
    [InlineData("hostfwd=tcp", "hostfwd=tcp: expected PROTOCOL:HOSTPORT-:GUESTPORT")]
    [InlineData("hostfwd=tcp:80", "hostfwd=tcp:80: expected PROTOCOL:HOSTPORT-:GUESTPORT")]
    [InlineData("hostfwd=tcp:localhost:80-:80", "'localhost' is not an IP address")]
    [InlineData("tap=", "tap=: not a network interface name")]
    [InlineData("tap=abcdefghijklmnop", "tap=abcdefghijklmnop: not a network interface name")]
    [InlineData("tap=a/b", "tap=a/b: not a network interface name")]
    [InlineData("tap=a:b", "tap=a:b: not a network interface name")]
    [InlineData("tap=a b", "tap=a b: not a network interface name")]
    [InlineData("tap=.", "tap=.: not a network interface name")]
    [InlineData("tap=..", "tap=..: not a network interface name")]
    [InlineData("tap=a\tb", "not a network interface name")]
    public void BadOption_IsAFormatError_NamingTheOption(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => NetDeviceOptions.Parse(text));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("", "no TAP device given")]
    [InlineData("mac=02:00:00:00:00:01", "no TAP device given")]
    [InlineData(",tap0", "no TAP device given")]
    [InlineData("tap0,user", "user: the backend was already given (tap0)")]
    [InlineData("tap0,tap=tap1", "tap=tap1: the backend was already given (tap0)")]
    [InlineData("tap0,hostfwd=tcp:8080-:80", "port forwards are for user-mode networking")]
    [InlineData("abcdefghijklmnop", "tap=abcdefghijklmnop: not a network interface name")]
    [InlineData("a/b", "tap=a/b: not a network interface name")]
    public void XhyveVirtioTap_BadOptions_AreNamed(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => NetDeviceOptions.Parse(text, xhyveTap: true));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TapName_OfFifteenCharacters_IsTheLongestAccepted()
    {
        Assert.Equal("abcdefghijklmno", NetDeviceOptions.Parse("tap=abcdefghijklmno").TapName);
    }

    [Fact]
    public void DifferentProtocols_MayForwardTheSameHostPort()
    {
        var o = NetDeviceOptions.Parse("hostfwd=tcp:8080-:80,hostfwd=udp:8080-:80");
        Assert.Equal(2, o.PortForwards.Count);
    }

    [Fact]
    public void OneHostPortOnTwoAddresses_IsRefused_AsTheHostCannotBindBoth()
    {
        var e = Assert.Throws<FormatException>(() => NetDeviceOptions.Parse("hostfwd=tcp:127.0.0.2:8080-:80,hostfwd=tcp:8080-:81"));
        Assert.Contains("host port tcp:8080 is already forwarded (hostfwd=tcp:127.0.0.2:8080-:80)", e.Message);
    }

    [Theory]
    [InlineData("tcp:8080-:80", "tcp", null, 8080, 80)]
    [InlineData("tcp:8080:80", "tcp", null, 8080, 80)]
    [InlineData("TCP:1-:65535", "tcp", null, 1, 65535)]
    [InlineData("udp:5353-:53", "udp", null, 5353, 53)]
    [InlineData("tcp::2222-:22", "tcp", null, 2222, 22)]                         // QEMU's usual spelling, empty address
    [InlineData("tcp:127.0.0.1:8080-:80", "tcp", "127.0.0.1", 8080, 80)]
    [InlineData("tcp:127.0.0.1:8080:80", "tcp", "127.0.0.1", 8080, 80)]
    [InlineData("udp:[::1]:5353-:53", "udp", "::1", 5353, 53)]
    [InlineData("tcp:[fe80::1]:8080:80", "tcp", "fe80::1", 8080, 80)]
    public void PortForwardParse_TakesBothSpellings_WithOrWithoutAnAddress(string text, string protocol, string? address, int host, int guest)
    {
        var f = PortForward.Parse(text);
        Assert.Equal(new PortForward(protocol, address, host, guest), f);
        Assert.Equal(f, PortForward.Parse(f.ToString()));
    }

    [Fact]
    public void PortForwardToString_IsQemusSpelling_WithBracketsForIpv6()
    {
        Assert.Equal("tcp:8080-:80", new PortForward("tcp", null, 8080, 80).ToString());
        Assert.Equal("udp:10.0.0.1:53-:53", new PortForward("udp", "10.0.0.1", 53, 53).ToString());
        Assert.Equal("tcp:[::1]:22-:2222", new PortForward("tcp", "::1", 22, 2222).ToString());
    }

    // ---- MAC addresses ----

    private static readonly Guid Uuid = Guid.Parse("12345678-9abc-def0-1234-56789abcdef0");

    [Fact]
    public void Derive_IsPinned_ToAKnownVector()
    {
        // SHA-256 over the UUID's 16 bytes (RFC 4122 order), bus, slot, function and "xhyve-net-mac", first 6 bytes
        // with the local bit set and the multicast bit clear; computed once outside .NET (Python hashlib). Changing it
        // changes every VM's MAC: DHCP leases and firewall rules break.
        Assert.Equal("3e:a3:0c:cf:c6:40", MacAddress.Derive(Uuid, new PciAddress(0, 2, 0)).ToString());
        Assert.Equal("d2:19:3b:61:4c:3c", MacAddress.Derive(Uuid, new PciAddress(0, 3, 0)).ToString());
    }

    [Fact]
    public void Derive_IsStable_LocallyAdministeredUnicast_AndDiffersPerSlotFunctionBusAndUuid()
    {
        var random = new Random(17);
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 500; i++)
        {
            var bytes = new byte[16];
            random.NextBytes(bytes);
            var uuid = new Guid(bytes);
            var address = new PciAddress(random.Next(256), random.Next(32), random.Next(8));
            var mac = MacAddress.Derive(uuid, address);
            Assert.Equal(mac, MacAddress.Derive(new Guid(bytes), address with { }));
            Assert.True(mac.IsLocallyAdministered, mac.ToString());
            Assert.False(mac.IsMulticast, mac.ToString());
            Assert.True(mac.Value <= 0xFFFF_FFFF_FFFF);
            Assert.True(seen.Add(mac.Value), $"{mac} repeated");
            Assert.NotEqual(mac, MacAddress.Derive(uuid, address with { Slot = (address.Slot + 1) % 32 }));
            Assert.NotEqual(mac, MacAddress.Derive(uuid, address with { Function = (address.Function + 1) % 8 }));
            Assert.NotEqual(mac, MacAddress.Derive(uuid, address with { Bus = (address.Bus + 1) % 256 }));
            bytes[random.Next(16)] ^= (byte)(1 << random.Next(8));
            Assert.NotEqual(mac, MacAddress.Derive(new Guid(bytes), address));
        }
    }

    [Fact]
    public void MacFor_UsesMacOption_ElseTheDerivedOne()
    {
        var at = new PciAddress(0, 4, 0);
        Assert.Equal(MacAddress.Derive(Uuid, at), NetDeviceOptions.Parse("user").MacFor(Uuid, at));
        Assert.Equal("02:00:00:00:00:42", NetDeviceOptions.Parse("mac=02:00:00:00:00:42").MacFor(Uuid, at).ToString());
    }

    [Fact]
    public void MacAddress_PrintsParsesAndCopiesFirstByteFirst()
    {
        var mac = MacAddress.Parse("00:1B:21:AB:cd:0F");
        Assert.Equal(0x001B_21AB_CD0FUL, mac.Value);
        Assert.Equal("00:1b:21:ab:cd:0f", mac.ToString());
        var b = new byte[6];
        mac.CopyTo(b);
        Assert.Equal(new byte[] { 0x00, 0x1B, 0x21, 0xAB, 0xCD, 0x0F }, b);
        Assert.False(mac.IsLocallyAdministered);                     // a vendor (OUI) address
        Assert.True(MacAddress.Parse("52:54:00:12:34:56").IsLocallyAdministered);   // QEMU's prefix is local
    }

    // ---- conflicts between adapters (VmSpecification.Validate) ----

    private static IReadOnlyList<string> Problems(params string[] devices)
    {
        var args = new List<string> { "-U", Uuid.ToString() };
        foreach (var d in devices) { args.Add("-s"); args.Add(d); }
        args.AddRange(["-f", $"kexec,{Kernel}"]);
        return CommandLineParser.Parse([.. args]).Spec.Validate(hostMaxVcpus: 8);
    }

    [Fact]
    public void TwoAdapters_WithDerivedMacsAndDifferentPorts_HaveNoProblems()
    {
        Assert.Empty(Problems("2,virtio-net", "3,virtio-net,hostfwd=tcp:8080-:80", "4,virtio-net,hostfwd=tcp:8081-:80", "5,virtio-tap,tap0", "6,virtio-net,tap=tap1"));
    }

    [Theory]
    [InlineData("2,virtio-net,mac=02:00:00:00:00:01", "3,virtio-net,tap=tap0,mac=02:00:00:00:00:01",
        "-s 0:3:0,virtio-net,tap=tap0,mac=02:00:00:00:00:01: MAC address 02:00:00:00:00:01 is already used by -s 0:2:0,virtio-net,mac=02:00:00:00:00:01")]
    [InlineData("2,virtio-net,tap=tap0", "3,virtio-tap,tap0",
        "-s 0:3:0,virtio-tap,tap0: TAP device tap0 is already used by -s 0:2:0,virtio-net,tap=tap0")]
    [InlineData("2,virtio-net,hostfwd=tcp:8080-:80", "3,virtio-net,hostfwd=udp:8080-:80,hostfwd=tcp:8080:22",
        "-s 0:3:0,virtio-net,hostfwd=udp:8080-:80,hostfwd=tcp:8080:22: host port tcp:8080 is already used by -s 0:2:0,virtio-net,hostfwd=tcp:8080-:80")]
    public void TwoAdapters_SharingAMacTapOrForwardedHostPort_AreOneProblemNamingBoth(string first, string second, string problem)
    {
        Assert.Equal([problem], Problems(first, second));
    }

    [Fact]
    public void AMacOption_EqualToAnotherAdaptersDerivedMac_IsAProblem()
    {
        string derived = MacAddress.Derive(Uuid, new PciAddress(0, 2, 0)).ToString();
        var p = Assert.Single(Problems("2,virtio-net", $"3,virtio-net,mac={derived}"));
        Assert.Contains($"MAC address {derived} is already used by -s 0:2:0,virtio-net", p);
    }

    [Fact]
    public void BadNetOption_IsAProblemNamingTheDeviceAndTheOption()
    {
        var p = Assert.Single(Problems("2,virtio-net,mac=01:00:00:00:00:01"));
        Assert.StartsWith("-s 0:2:0,virtio-net,mac=01:00:00:00:00:01: mac=01:00:00:00:00:01: a multicast address", p);
    }
}
