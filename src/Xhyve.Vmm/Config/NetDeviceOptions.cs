using System.Globalization;
using System.Security.Cryptography;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Vmm.Config;

/// <summary>Where a network adapter's frames go on the host.</summary>
public enum NetBackendKind
{
    /// <summary>User-mode networking through passt (no root, no setup): DHCP, DNS, NAT, port forwards.</summary>
    User,
    /// <summary>A host TAP device (bridges, namespaces); needs the device or CAP_NET_ADMIN.</summary>
    Tap,
}

/// <summary>A host port forwarded into the guest (user mode): hostfwd=tcp:[ADDR:]HOSTPORT-:GUESTPORT.</summary>
/// <param name="Protocol">tcp or udp.</param>
/// <param name="HostAddress">The host address to listen on, or null for passt's default (all).</param>
/// <param name="HostPort">The port on the host.</param>
/// <param name="GuestPort">The port in the guest.</param>
public sealed record PortForward(string Protocol, string? HostAddress, int HostPort, int GuestPort)
{
    /// <summary>Parses QEMU's spelling "tcp:8080-:80" (also "tcp:127.0.0.1:8080-:80") or the module's "tcp:8080:80".</summary>
    /// <exception cref="FormatException">Names the value and what is wrong with it.</exception>
    public static PortForward Parse(string text)
    {
        string Bad(string why) => $"hostfwd={text}: {why} (e.g. hostfwd=tcp:8080-:80)";
        int colon = text.IndexOf(':');
        if (colon < 0) throw new FormatException(Bad("expected PROTOCOL:HOSTPORT-:GUESTPORT"));
        string protocol = text[..colon].ToLowerInvariant(), rest = text[(colon + 1)..];
        if (protocol is not ("tcp" or "udp")) throw new FormatException(Bad($"protocol '{text[..colon]}' is not tcp or udp"));
        string host, guest;
        int dash = rest.IndexOf("-:", StringComparison.Ordinal);
        if (dash >= 0) { host = rest[..dash]; guest = rest[(dash + 2)..]; }
        else
        {
            int last = rest.LastIndexOf(':');
            if (last < 0) throw new FormatException(Bad("expected PROTOCOL:HOSTPORT-:GUESTPORT"));
            host = rest[..last]; guest = rest[(last + 1)..];
        }
        string? address = null;
        int hostColon = host.LastIndexOf(':');
        if (hostColon >= 0) { address = host[..hostColon].Trim('[', ']'); host = host[(hostColon + 1)..]; }
        if (address is { Length: 0 }) address = null;
        if (address != null && !System.Net.IPAddress.TryParse(address, out _)) throw new FormatException(Bad($"'{address}' is not an IP address"));
        return new PortForward(protocol, address, Port(host, "host port", Bad), Port(guest, "guest port", Bad));
    }

    private static int Port(string s, string what, Func<string, string> bad) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int p) && p is >= 1 and <= 65535
            ? p : throw new FormatException(bad($"{what} '{s}' is not a port from 1 to 65535"));

    /// <summary>QEMU's spelling, as the engine's command line takes it.</summary>
    public override string ToString() => $"{Protocol}:{(HostAddress is { } a ? (a.Contains(':') ? $"[{a}]" : a) + ":" : "")}{HostPort}-:{GuestPort}";
}

/// <summary>An Ethernet MAC address.</summary>
public readonly record struct MacAddress(ulong Value)
{
    /// <summary>The six bytes, first byte first.</summary>
    public void CopyTo(Span<byte> destination)
    {
        for (int i = 0; i < 6; i++) destination[i] = (byte)(Value >> (8 * (5 - i)));
    }

    public bool IsMulticast => ((Value >> 40) & 1) != 0;
    public bool IsLocallyAdministered => ((Value >> 40) & 2) != 0;

    /// <summary>Parses xx:xx:xx:xx:xx:xx (or with '-'); refuses multicast addresses, which no NIC may own.</summary>
    /// <exception cref="FormatException">Names the value and what is wrong with it.</exception>
    public static MacAddress Parse(string text)
    {
        var parts = text.Split(text.Contains('-') ? '-' : ':');
        ulong v = 0;
        if (parts.Length != 6 || parts.Any(p => p.Length != 2 || !byte.TryParse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _)))
            throw new FormatException($"mac={text}: expected six hex pairs separated by ':' (e.g. 52:54:00:12:34:56)");
        foreach (var p in parts) v = (v << 8) | byte.Parse(p, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var mac = new MacAddress(v);
        if (mac.IsMulticast) throw new FormatException($"mac={text}: a multicast address (lowest bit of the first byte set) cannot be a NIC's address");
        if (v == 0) throw new FormatException($"mac={text}: the all-zero address cannot be a NIC's address");
        return mac;
    }

    /// <summary>
    /// The stable address of the adapter at <paramref name="address"/> in VM <paramref name="vmUuid"/>: a hash of
    /// both, with the locally administered bit set and the multicast bit clear. The same UUID and PCI address give
    /// the same MAC on every host (DHCP leases and firewall rules survive a restart); another slot gives another.
    /// </summary>
    public static MacAddress Derive(Guid vmUuid, PciAddress address)
    {
        var label = "xhyve-net-mac"u8;   // keeps these hashes apart from any other use of the UUID
        Span<byte> input = stackalloc byte[16 + 3 + label.Length];
        vmUuid.TryWriteBytes(input, bigEndian: true, out _);
        input[16] = (byte)address.Bus; input[17] = (byte)address.Slot; input[18] = (byte)address.Function;
        label.CopyTo(input[19..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        hash[0] = (byte)((hash[0] & 0xFC) | 0x02);
        ulong v = 0;
        for (int i = 0; i < 6; i++) v = (v << 8) | hash[i];
        return new MacAddress(v);
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[6];
        CopyTo(b);
        return string.Create(CultureInfo.InvariantCulture, $"{b[0]:x2}:{b[1]:x2}:{b[2]:x2}:{b[3]:x2}:{b[4]:x2}:{b[5]:x2}");
    }
}

/// <summary>
/// The options of a network adapter:
/// -s N,virtio-net[,user|tap=NAME][,mac=MAC][,hostfwd=tcp:HOSTPORT-:GUESTPORT]... and xhyve's -s N,virtio-tap,tapN[,mac=MAC].
/// One parser for the engine and the management library.
/// </summary>
public sealed record NetDeviceOptions
{
    public NetBackendKind Backend { get; init; } = NetBackendKind.User;
    /// <summary>The TAP device's name (Backend Tap).</summary>
    public string? TapName { get; init; }
    /// <summary>mac=, or null for the stable address (<see cref="MacAddress.Derive"/>).</summary>
    public MacAddress? Mac { get; init; }
    public IReadOnlyList<PortForward> PortForwards { get; init; } = [];

    /// <summary>The address the adapter at <paramref name="address"/> gets: mac= or the stable one.</summary>
    public MacAddress MacFor(Guid vmUuid, PciAddress address) => Mac ?? MacAddress.Derive(vmUuid, address);

    /// <summary>Parses the options after "virtio-net" (or, with <paramref name="xhyveTap"/>, after "virtio-tap",
    /// whose first option is the TAP's name).</summary>
    /// <exception cref="FormatException">Names the option and what is wrong with it.</exception>
    public static NetDeviceOptions Parse(string? text, bool xhyveTap = false)
    {
        var items = (text ?? "").Split(',');
        var o = new NetDeviceOptions();
        int start = 0;
        if (xhyveTap)
        {
            if (items[0].Length == 0 || items[0].Contains('=')) throw new FormatException("no TAP device given (e.g. virtio-tap,tap0)");
            o = o with { Backend = NetBackendKind.Tap, TapName = CheckTapName(items[0]) };
            start = 1;
        }
        var forwards = new List<PortForward>();
        string? backend = xhyveTap ? items[0] : null, mac = null;
        foreach (var item in items.AsSpan(start))
        {
            if (item.Length == 0) continue;
            int eq = item.IndexOf('=');
            string key = eq < 0 ? item : item[..eq], value = eq < 0 ? "" : item[(eq + 1)..];
            switch (key)
            {
                case "user" when eq < 0:
                case "tap" when eq >= 0:
                    if (backend != null) throw new FormatException($"{item}: the backend was already given ({backend}); an adapter has one");
                    backend = item;
                    o = key == "user" ? o with { Backend = NetBackendKind.User } : o with { Backend = NetBackendKind.Tap, TapName = CheckTapName(value) };
                    break;
                case "mac" when eq >= 0:
                    if (mac != null) throw new FormatException($"{item}: mac={mac} was already given");
                    mac = value;
                    o = o with { Mac = MacAddress.Parse(value) };
                    break;
                case "hostfwd" when eq >= 0:
                    var f = PortForward.Parse(value);
                    // One host port once, whatever the address: 127.0.0.1:8080 and *:8080 cannot both be bound.
                    if (forwards.FirstOrDefault(x => x.Protocol == f.Protocol && x.HostPort == f.HostPort) is { } dup)
                        throw new FormatException($"{item}: host port {f.Protocol}:{f.HostPort} is already forwarded (hostfwd={dup})");
                    forwards.Add(f);
                    break;
                default:
                    throw new FormatException($"{item}: unknown network option (user, tap=NAME, mac=MAC, hostfwd=tcp:HOSTPORT-:GUESTPORT)");
            }
        }
        if (forwards.Count > 0 && o.Backend != NetBackendKind.User)
            throw new FormatException($"hostfwd={forwards[0]}: port forwards are for user-mode networking; a TAP adapter is reached directly");
        return o with { PortForwards = forwards };
    }

    /// <summary>The options in the engine's spelling (after "virtio-net"), the inverse of <see cref="Parse"/>.</summary>
    public override string ToString()
    {
        var parts = new List<string> { Backend == NetBackendKind.Tap ? "tap=" + TapName : "user" };
        if (Mac is { } m) parts.Add("mac=" + m);
        parts.AddRange(PortForwards.Select(f => "hostfwd=" + f));
        return string.Join(",", parts);
    }

    // IFNAMSIZ is 16 with the terminating NUL; '/' and blanks are never valid in an interface name.
    private static string CheckTapName(string name) =>
        name.Length is >= 1 and <= 15 && !name.Any(c => c == '/' || c == ':' || char.IsWhiteSpace(c) || char.IsControl(c)) && name is not ("." or "..")
            ? name : throw new FormatException($"tap={name}: not a network interface name (1 to 15 characters, no '/', ':' or blanks)");
}
