using Xhyve.Vmm.Serial;

namespace Xhyve.Vmm.Config;

/// <summary>
/// What one -s asks for, parsed once from its emulation and options (Cloud Hypervisor's DiskConfig/NetConfig:
/// parse the option string into a typed record, then validate the records). <see cref="VmSpecification.Validate"/>
/// reports the problems of <see cref="UnsupportedDeviceSpec"/> and <see cref="InvalidDeviceSpec"/> with every other
/// problem; <see cref="VmBuilder"/> switches on the typed record and never reads the option string again.
/// </summary>
public abstract record DeviceSpec
{
    /// <summary>Emulations the engine builds today.</summary>
    public static readonly IReadOnlySet<string> SupportedEmulations = new HashSet<string>
        { "hostbridge", "amd_hostbridge", "lpc", "uart", "testdev", "virtio-blk", "virtio-rnd", "virtio-net", "virtio-tap", "ahci-hd", "ahci-cd", "ahci" };
    /// <summary>Emulations later work will add: refused as "not supported yet" rather than unknown.</summary>
    public static readonly IReadOnlySet<string> PlannedEmulations = new HashSet<string>
        { "virtio-9p", "virtio-sock" };

    /// <summary>Parses the emulation and options of <paramref name="device"/>. Never throws: a bad -s becomes an
    /// <see cref="UnsupportedDeviceSpec"/> or <see cref="InvalidDeviceSpec"/> whose problem names the -s argument.</summary>
    public static DeviceSpec Parse(PciDeviceSpec device)
    {
        string emulation = device.Emulation, options = device.Options ?? "";
        if (PlannedEmulations.Contains(emulation)) return new UnsupportedDeviceSpec(emulation, $"{device}: emulation '{emulation}' is not supported yet");
        if (!SupportedEmulations.Contains(emulation)) return new UnsupportedDeviceSpec(emulation, $"{device}: unknown emulation '{emulation}'");
        try
        {
            return emulation switch
            {
                "uart" => new UartSpec(SerialBackendSpec.ParseList(options)),
                "virtio-blk" => new VirtioBlockSpec(BlockDeviceOptions.Parse(options)),
                "virtio-net" => new VirtioNetSpec(NetDeviceOptions.Parse(options)),
                "virtio-tap" => new VirtioNetSpec(NetDeviceOptions.Parse(options, xhyveTap: true)),
                "ahci-hd" or "ahci-cd" or "ahci" => new AhciSpec(emulation, AhciDeviceOptions.Parse(emulation, options)),
                _ when options.Length > 0 => new InvalidDeviceSpec(emulation, $"{device}: {emulation} takes no options"),
                "hostbridge" => new HostBridgeSpec(Amd: false),
                "amd_hostbridge" => new HostBridgeSpec(Amd: true),
                "lpc" => new LpcSpec(),
                "testdev" => new TestDevSpec(),
                "virtio-rnd" => new VirtioRngSpec(),
                _ => new UnsupportedDeviceSpec(emulation, $"{device}: unknown emulation '{emulation}'"),
            };
        }
        catch (FormatException e) { return new InvalidDeviceSpec(emulation, $"{device}: {e.Message}"); }
    }
}

/// <summary>-s N,hostbridge (bhyve's ids) or -s N,amd_hostbridge.</summary>
public sealed record HostBridgeSpec(bool Amd) : DeviceSpec;

/// <summary>-s 31,lpc: the LPC bridge the COM ports (-l com1/com2) live on.</summary>
public sealed record LpcSpec : DeviceSpec;

/// <summary>-s N,uart,BACKEND[,BACKEND...]: a 16550 behind a PCI function.</summary>
public sealed record UartSpec(IReadOnlyList<SerialBackendSpec> Backends) : DeviceSpec;

/// <summary>-s N,testdev: the PCI test device of the test guests.</summary>
public sealed record TestDevSpec : DeviceSpec;

/// <summary>-s N,virtio-blk,PATH[,options]: a disk.</summary>
public sealed record VirtioBlockSpec(BlockDeviceOptions Options) : DeviceSpec
{
    public string Path => Options.Path;
}

/// <summary>-s N,virtio-net[,options] or -s N,virtio-tap,tapN[,mac=]: a network adapter.</summary>
public sealed record VirtioNetSpec(NetDeviceOptions Options) : DeviceSpec;

/// <summary>-s N,ahci-hd,PATH / -s N,ahci-cd[,PATH] / -s N,ahci,hd:PATH,cd:PATH: an AHCI controller with one drive per port.</summary>
/// <param name="Emulation">The spelling it was given in, so the command line is written back the same way.</param>
/// <param name="Ports">The drives, port 0 first.</param>
public sealed record AhciSpec(string Emulation, IReadOnlyList<AhciPortSpec> Ports) : DeviceSpec
{
    /// <summary>The options text of this controller (for a changed medium: <c>with { Ports = ... }</c>, then this).</summary>
    public string? Options => AhciDeviceOptions.Format(Emulation, Ports);
}

/// <summary>-s N,virtio-rnd: an entropy source.</summary>
public sealed record VirtioRngSpec : DeviceSpec;

/// <summary>An emulation the engine does not build (unknown, or planned and not supported yet).</summary>
/// <param name="Emulation">The emulation as written.</param>
/// <param name="Problem">One line naming the -s argument.</param>
public sealed record UnsupportedDeviceSpec(string Emulation, string Problem) : DeviceSpec;

/// <summary>A known emulation whose options are wrong.</summary>
/// <param name="Emulation">The emulation as written.</param>
/// <param name="Problem">One line naming the -s argument and the option.</param>
public sealed record InvalidDeviceSpec(string Emulation, string Problem) : DeviceSpec;
