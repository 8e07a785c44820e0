using System.Globalization;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Serial;

namespace Xhyve.Vmm.Config;

/// <summary>What the command line asks the engine to do.</summary>
public enum CliAction { Run, Help, Version, PrintMacs }

/// <param name="Action">Run the VM, or only print help, the version or MAC addresses.</param>
/// <param name="Spec">The VM the command line describes.</param>
/// <param name="Verbose">--verbose: describe the built machine (kernel load, PCI functions and BARs) on stderr.</param>
/// <param name="ControlSocket">--control-socket: where the engine serves its control API (docs/control-api.md).</param>
/// <param name="ExitFile">--exit-file: where the engine writes its exit status as JSON when it ends.</param>
public sealed record CliResult(CliAction Action, VmSpecification Spec, bool Verbose = false, string? ControlSocket = null, string? ExitFile = null);

/// <summary>A malformed argument: the message names the flag and what is wrong.</summary>
public sealed class CliException(string message) : Exception(message);

/// <summary>
/// Parses xhyve's command line (getopt-style: flags may be combined, arguments attached or separate),
/// as ../shared/reference/xhyve-cli.md describes, plus the engine's long options.
/// </summary>
public static class CommandLineParser
{
    private const string FlagsWithArgument = "cFfglmpsU";
    private const string FlagsWithoutArgument = "AbCeHhMPuvwWxY";
    private static readonly string[] LongOptionsWithArgument = ["--kernel-load", "--name", "--control-socket", "--exit-file"];

    /// <summary>Whether <paramref name="option"/> ("-c", "--name") takes a value (attached, "-c2" / "--name=x", or the
    /// next word): for callers that split a command line the way this parser does.</summary>
    public static bool TakesValue(string option) =>
        option.StartsWith("--", StringComparison.Ordinal) ? LongOptionsWithArgument.Contains(option)
        : option.Length == 2 && option[0] == '-' && FlagsWithArgument.Contains(option[1]);

    public static CliResult Parse(IReadOnlyList<string> args)
    {
        var spec = new VmSpecification();
        var pci = new List<PciDeviceSpec>();
        var pinning = new Dictionary<int, int>();
        var action = CliAction.Run;
        KernelLoadMode loadMode = KernelLoadMode.Auto;
        string? firmwareGivenAs = null;   // "-f X" or "-l bootrom,X": how the firmware was first given, to name both of two
        bool verbose = false;
        string? controlSocket = null, exitFile = null;

        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                (string name, string? value) = arg.IndexOf('=') is var eq and > 0 ? (arg[..eq], arg[(eq + 1)..]) : (arg, null);
                value ??= LongOptionsWithArgument.Contains(name) ? (i + 1 < args.Count ? args[++i] : throw new CliException($"{name}: missing value")) : null;
                switch (name)
                {
                    case "--help": action = CliAction.Help; break;
                    case "--version": action = CliAction.Version; break;
                    case "--verbose": verbose = true; break;
                    case "--kernel-load":
                        loadMode = value switch
                        {
                            "auto" => KernelLoadMode.Auto,
                            "decompress" => KernelLoadMode.HostDecompress,
                            "bzimage" => KernelLoadMode.BzImage,
                            _ => throw new CliException($"--kernel-load: '{value}' is not one of auto, decompress, bzimage"),
                        };
                        break;
                    case "--name":
                        if (string.IsNullOrWhiteSpace(value)) throw new CliException("--name: the VM name is empty");
                        spec = spec with { Name = value! };
                        break;
                    case "--control-socket":
                        controlSocket = string.IsNullOrWhiteSpace(value) ? throw new CliException("--control-socket: the socket path is empty") : value;
                        break;
                    case "--exit-file":
                        exitFile = string.IsNullOrWhiteSpace(value) ? throw new CliException("--exit-file: the path is empty") : value;
                        break;
                    default: throw new CliException($"{name}: unknown option (see xhyve -h)");
                }
                continue;
            }
            if (arg.Length < 2 || arg[0] != '-')
                throw new CliException($"'{arg}': unexpected argument (options start with '-'; see xhyve -h)");

            for (int j = 1; j < arg.Length; j++)
            {
                char flag = arg[j];
                if (FlagsWithArgument.Contains(flag))
                {
                    string value = j + 1 < arg.Length ? arg[(j + 1)..]
                        : i + 1 < args.Count ? args[++i]
                        : throw new CliException($"-{flag}: missing argument");
                    spec = ApplyWithArgument(spec, flag, value, pci, pinning, ref firmwareGivenAs);
                    break; // the rest of this word was the argument
                }
                if (!FlagsWithoutArgument.Contains(flag))
                    throw new CliException($"-{flag}: unknown flag (see xhyve -h)");
                switch (flag)
                {
                    case 'A': spec = spec with { Acpi = true }; break;
                    case 'b': throw new CliException("-b: the FreeBSD bvm console is not supported");
                    case 'C': spec = spec with { CoreDumpIncludesMemory = true }; break;
                    case 'e': spec = spec with { StrictIo = true }; break;
                    case 'H': spec = spec with { ExitOnHlt = true }; break;
                    case 'h': action = CliAction.Help; break;
                    case 'M': action = CliAction.PrintMacs; break;
                    case 'P': spec = spec with { ExitOnPause = true }; break;
                    case 'u': spec = spec with { RtcUtc = true }; break;
                    case 'v': action = CliAction.Version; break;
                    case 'w': spec = spec with { IgnoreUnknownMsrs = true }; break;
                    case 'W': spec = spec with { SingleVectorMsi = true }; break;
                    case 'x': spec = spec with { X2Apic = true }; break;
                    case 'Y': spec = spec with { MpTable = false }; break; // takes no argument (xhyve's bug swallowed one)
                }
            }
        }

        if (spec.Firmware is KexecFirmware k) spec = spec with { Firmware = k with { LoadMode = loadMode } };
        spec = spec with { PciDevices = pci, VcpuPinning = pinning };
        return new CliResult(action, spec, verbose, controlSocket, exitFile);
    }

    private static VmSpecification ApplyWithArgument(VmSpecification spec, char flag, string value,
        List<PciDeviceSpec> pci, Dictionary<int, int> pinning, ref string? firmwareGivenAs)
    {
        switch (flag)
        {
            case 'c':
                if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int cpus) || cpus < 1)
                    throw new CliException($"-c {value}: the vCPU count must be a whole number of at least 1");
                return spec with { Vcpus = cpus };
            case 'm':
                if (!SizeParser.TryParse(value, out ulong bytes))
                    throw new CliException($"-m {value}: invalid memory size (examples: 256M, 1G, 1024)");
                return spec with { MemoryBytes = bytes };
            case 'F':
                if (value.Length == 0) throw new CliException("-F: the pid file path is empty");
                return spec with { PidFile = value };
            case 'g':
                if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
                    throw new CliException($"-g {value}: not a TCP port number");
                return spec with { GdbPort = port };
            case 'U':
                if (!Guid.TryParse(value, out var uuid)) throw new CliException($"-U {value}: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
                return spec with { Uuid = uuid };
            case 'p':
                var parts = value.Split(':');
                if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int vcpu)
                    || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int hostCpu))
                    throw new CliException($"-p {value}: expected vcpu:hostcpu");
                if (!pinning.TryAdd(vcpu, hostCpu)) throw new CliException($"-p {value}: vCPU {vcpu} is already pinned");
                return spec;
            case 's':
                pci.Add(ParsePciDevice(value));
                return spec;
            case 'l':
                return ParseLpc(spec, value, ref firmwareGivenAs);
            case 'f':
                // -f and -l bootrom both choose the firmware: two choices, in either order, are refused naming both.
                if (firmwareGivenAs != null) throw new CliException($"-f {value}: the firmware was already given with {firmwareGivenAs}");
                firmwareGivenAs = $"-f {value}";
                return spec with { Firmware = ParseFirmware(value) };
        }
        throw new CliException($"-{flag}: unknown flag");
    }

    /// <summary>-s SLOT[:FUNC],EMU[,CONF] or -s BUS:SLOT:FUNC,EMU[,CONF].</summary>
    public static PciDeviceSpec ParsePciDevice(string value)
    {
        int comma = value.IndexOf(',');
        string where = comma < 0 ? value : value[..comma];
        string rest = comma < 0 ? "" : value[(comma + 1)..];
        if (rest.Length == 0) throw new CliException($"-s {value}: missing emulation (e.g. -s 0,hostbridge)");
        int comma2 = rest.IndexOf(',');
        string emulation = comma2 < 0 ? rest : rest[..comma2];
        string? options = comma2 < 0 ? null : rest[(comma2 + 1)..];
        if (!PciAddress.TryParse(where, out var address))
            throw new CliException($"-s {value}: '{where}' is not slot, slot:function or bus:slot:function");
        if (!address.IsValid)
            throw new CliException($"-s {value}: bus:slot:function {address} out of range (bus 0-255, slot 0-31, function 0-7)");
        if (emulation.Length == 0) throw new CliException($"-s {value}: missing emulation");
        var device = new PciDeviceSpec(address, emulation, options);
        _ = device.Device;   // the emulation and options are parsed here, once; their problems wait for Validate
        return device;
    }

    private static VmSpecification ParseLpc(VmSpecification spec, string value, ref string? firmwareGivenAs)
    {
        int comma = value.IndexOf(',');
        string device = (comma < 0 ? value : value[..comma]).ToLowerInvariant();
        string config = comma < 0 ? "" : value[(comma + 1)..];
        switch (device)
        {
            case "com1" or "com2":
                IReadOnlyList<SerialBackendSpec> backends;
                try { backends = SerialBackendSpec.ParseList(config); }
                catch (FormatException e) { throw new CliException($"-l {value}: {e.Message}"); }
                // A later -l com1 replaces the earlier one, as in xhyve (scripts append their own to a base line).
                return device == "com1" ? spec with { Com1 = backends } : spec with { Com2 = backends };
            case "bootrom":
                if (firmwareGivenAs != null) throw new CliException($"-l {value}: the firmware was already given with {firmwareGivenAs}");
                firmwareGivenAs = $"-l {value}";
                return spec with { Firmware = ParseBootrom($"-l {value}", config) };
            default:
                throw new CliException($"-l {value}: unknown LPC device '{device}' (expected com1, com2 or bootrom)");
        }
    }

    /// <summary>bhyve's bootrom,CODE[,VARS]: the ROM and, for UEFI, the variable store (a third field is refused:
    /// bhyve has none, and a path with a comma would be read wrongly).</summary>
    private static BootromFirmware ParseBootrom(string given, string config)
    {
        var f = config.Split(',');
        if (f[0].Length == 0) throw new CliException($"{given}: missing ROM path (bootrom,CODE[,VARS])");
        if (f.Length > 2) throw new CliException($"{given}: expected bootrom,CODE[,VARS] (paths cannot contain commas)");
        if (f.Length == 2 && f[1].Length == 0) throw new CliException($"{given}: the variable store path after the comma is empty");
        return new BootromFirmware(f[0], f.Length == 2 ? f[1] : null);
    }

    /// <summary>-f kexec|multiboot|bootrom|fbsd,...</summary>
    public static FirmwareSpec ParseFirmware(string value)
    {
        int comma = value.IndexOf(',');
        string kind = comma < 0 ? value : value[..comma];
        string rest = comma < 0 ? "" : value[(comma + 1)..];
        switch (kind)
        {
            case "kexec":
            {
                // KERNEL[,INITRD][,CMDLINE]: the command line is everything after the second comma.
                var f = rest.Split(',', 3);
                if (f[0].Length == 0) throw new CliException($"-f {value}: missing kernel path (-f kexec,KERNEL[,INITRD][,CMDLINE])");
                return new KexecFirmware(f[0], f.Length > 1 && f[1].Length > 0 ? f[1] : null, f.Length > 2 && f[2].Length > 0 ? f[2] : null);
            }
            case "multiboot":
            {
                var f = rest.Split(',', 3);
                if (f[0].Length == 0) throw new CliException($"-f {value}: missing kernel path (-f multiboot,KERNEL[,MODULE[;CMD]:...][,CMDLINE])");
                var modules = new List<MultibootModule>();
                if (f.Length > 1 && f[1].Length > 0)
                {
                    foreach (var m in f[1].Split(':'))
                    {
                        int semi = m.IndexOf(';');
                        string path = semi < 0 ? m : m[..semi];
                        if (path.Length == 0) throw new CliException($"-f {value}: empty multiboot module path");
                        modules.Add(new MultibootModule(path, semi < 0 ? null : m[(semi + 1)..]));
                    }
                }
                return new MultibootFirmware(f[0], modules, f.Length > 2 && f[2].Length > 0 ? f[2] : null);
            }
            case "bootrom":
                return ParseBootrom($"-f {value}", rest);
            case "fbsd":
            {
                var f = rest.Split(',', 3);
                if (f.Length < 2 || f[0].Length == 0 || f[1].Length == 0)
                    throw new CliException($"-f {value}: expected fbsd,USERBOOT,BOOTVOLUME[,KERNELENV]");
                return new FreeBsdFirmware(f[0], f[1], f.Length > 2 ? f[2] : null);
            }
            default:
                throw new CliException($"-f {value}: unknown firmware '{kind}' (expected kexec, multiboot, bootrom or fbsd)");
        }
    }

    public const string Usage = """
        Usage: xhyve [-behuwxACHPWY] [-c vcpus] [-F <pidfile>] [-g <gdb port>] [-l <lpc>]
                     [-m mem] [-p vcpu:hcpu] [-s <pci>] [-U uuid] -f <fw>
               -A: create ACPI tables
               -b: enable bvmcons (not supported)
               -c: # cpus (default 1)
               -C: include guest memory in core file
               -e: exit on unhandled I/O access
               -f: firmware: kexec,KERNEL[,INITRD][,CMDLINE] | multiboot,KERNEL[,MODULE[;CMD][:...]][,CMDLINE]
                   | bootrom,CODE[,VARS] | fbsd,USERBOOT,BOOTVOLUME[,KERNELENV]
               -F: pid file (held locked while running; a stale one is replaced; removed at exit)
               -g: gdb port
               -h: help
               -H: vmexit from the guest on hlt
               -l: LPC device configuration: com1,BACKEND | com2,BACKEND | bootrom,CODE[,VARS]
                   CODE: firmware ROM (bios.bin, OVMF_CODE.fd); VARS: the VM's own UEFI variable store
                   BACKEND: stdio | autopty[=PATH] | log=PATH | null | /dev/TTY (several with commas)
               -m: memory size, e.g. 256M, 1G, 1024 (MiB) (default 256M)
               -M: print the MAC address(es) of the virtio-net devices and exit
               -p: pin 'vcpu' to 'hostcpu'
               -P: vmexit from the guest on pause
               -s: <slot,driver,configinfo> PCI slot config: slot[:func] or bus:slot:func
                   drivers: hostbridge lpc uart virtio-blk virtio-rnd virtio-net virtio-tap ahci-hd ahci-cd ahci testdev
                   hostbridge[,model=i440fx|q35][,vendor=ID][,devid=ID]: model= presents the chipset UEFI firmware
                   (OVMF) needs: i440FX with its PIIX4 PM function at 0:1.3, or Q35 (needs -s 31,lpc)
                   virtio-net[,user|tap=NAME][,mac=MAC][,hostfwd=tcp|udp:HOSTPORT-:GUESTPORT]: user is
                   NAT through passt (no root); virtio-tap,tapN is virtio-net,tap=tapN
               -u: RTC keeps UTC time
               -U: uuid
               -v: show build version
               -w: ignore unimplemented MSRs
               -W: force virtio to use single-vector MSI
               -x: local apic is in x2APIC mode
               -Y: disable MPtable generation
               --kernel-load=auto|decompress|bzimage: how -f kexec enters a bzImage (default auto:
                   decompress the payload on the host when its format allows)
               --name=NAME: VM name (seeds the default UUID)
               --verbose: describe the built machine (kernel, PCI functions, BARs) on stderr
               --control-socket=PATH: serve the control API on a Unix socket (see docs/control-api.md)
               --exit-file=PATH: write the exit status as JSON when the engine ends
        Exit status: 0 powered off, 1 error, 2 reset, 3 triple fault, 100 unhandled vCPU exit.
        """;
}
