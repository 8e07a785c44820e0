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
                "hostbridge" => HostBridgeSpec.Parse(options),
                _ when options.Length > 0 => new InvalidDeviceSpec(emulation, $"{device}: {emulation} takes no options"),
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

/// <summary>Which chipset a host bridge presents.</summary>
public enum HostBridgeModel
{
    /// <summary>bhyve's own ids (1275:1275, or AMD's 1022:7432 for amd_hostbridge): enough for Linux and SeaBIOS.</summary>
    Bhyve,
    /// <summary>Intel i440FX (8086:1237) with the PIIX4 power-management function at 0:1.3, as OVMF expects.</summary>
    I440fx,
    /// <summary>Intel Q35 (MCH 8086:29C0) with the ICH9 LPC bridge at 0:31.0 and PCIEXBAR, as OVMF expects.</summary>
    Q35,
}

/// <summary>-s N,hostbridge[,model=i440fx|q35][,vendor=ID][,devid=ID] (bhyve's ids by default; bhyve's vendor= and
/// devid= change only the ids) or -s N,amd_hostbridge.</summary>
/// <param name="Amd">amd_hostbridge.</param>
/// <param name="Model">The chipset, for firmware that checks it (OVMF).</param>
/// <param name="Vendor">vendor=: the vendor id instead of the model's.</param>
/// <param name="DeviceId">devid=: the device id instead of the model's.</param>
public sealed record HostBridgeSpec(bool Amd, HostBridgeModel Model = HostBridgeModel.Bhyve, ushort? Vendor = null, ushort? DeviceId = null) : DeviceSpec
{
    /// <summary>The options of hostbridge; throws <see cref="FormatException"/> naming a bad one.</summary>
    public static HostBridgeSpec Parse(string options)
    {
        var model = HostBridgeModel.Bhyve;
        ushort? vendor = null, device = null;
        foreach (var option in options.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = option.IndexOf('=');
            string key = eq < 0 ? option : option[..eq], value = eq < 0 ? "" : option[(eq + 1)..];
            switch (key)
            {
                case "model":
                    model = value.ToLowerInvariant() switch
                    {
                        "i440fx" => HostBridgeModel.I440fx,
                        "q35" => HostBridgeModel.Q35,
                        "bhyve" => HostBridgeModel.Bhyve,
                        _ => throw new FormatException($"model={value}: not one of i440fx, q35, bhyve"),
                    };
                    break;
                case "vendor": vendor = ParseId(option, value); break;
                case "devid": device = ParseId(option, value); break;
                default: throw new FormatException($"'{option}': unknown option (hostbridge takes model=i440fx|q35, vendor=ID, devid=ID)");
            }
        }
        if (model != HostBridgeModel.Bhyve && (vendor != null || device != null))
            throw new FormatException($"model={model.ToString().ToLowerInvariant()} sets the ids itself; vendor= and devid= cannot change them");
        return new HostBridgeSpec(Amd: false, model, vendor, device);
    }

    /// <summary>A 16-bit id as bhyve reads it (strtol base 0): 0x8086, 32902 or 0100206.</summary>
    private static ushort ParseId(string option, string value)
    {
        try
        {
            uint v = value.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? Convert.ToUInt32(value[2..], 16)
                : value.Length > 1 && value[0] == '0' ? Convert.ToUInt32(value[1..], 8)
                : uint.Parse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture);
            if (v <= 0xFFFF && value.Length > 0) return (ushort)v;
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException) { }
        throw new FormatException($"'{option}': not a 16-bit id (e.g. 0x8086)");
    }
}

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
