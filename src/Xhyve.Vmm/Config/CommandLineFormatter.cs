using System.Globalization;
using Xhyve.Vmm.Boot;

namespace Xhyve.Vmm.Config;

/// <summary>
/// The inverse of <see cref="CommandLineParser"/>: the xhyve arguments that describe a
/// <see cref="VmSpecification"/>, so that parsing them gives the same specification back.
/// </summary>
public static class CommandLineFormatter
{
    public static IReadOnlyList<string> ToArguments(VmSpecification spec)
    {
        var args = new List<string>(MachineFlags(spec));
        args.AddRange(["-c", spec.Vcpus.ToString(CultureInfo.InvariantCulture)]);
        args.AddRange(["-m", FormatSize(spec.MemoryBytes)]);
        if (spec.Uuid is Guid uuid) args.AddRange(["-U", uuid.ToString()]);
        if (spec.PidFile != null) args.AddRange(["-F", spec.PidFile]);
        foreach (var d in spec.PciDevices) args.AddRange(["-s", FormatPciDevice(d)]);
        if (spec.Com1 != null) args.AddRange(["-l", "com1," + string.Join(",", spec.Com1)]);
        if (spec.Com2 != null) args.AddRange(["-l", "com2," + string.Join(",", spec.Com2)]);
        // A boot ROM is written as bhyve writes it (-l bootrom,CODE[,VARS]); the parser takes -f bootrom too.
        if (spec.Firmware != null) args.AddRange([spec.Firmware is BootromFirmware ? "-l" : "-f", FormatFirmware(spec.Firmware)]);
        if (spec.Firmware is KexecFirmware { LoadMode: not KernelLoadMode.Auto } k)
            args.Add("--kernel-load=" + (k.LoadMode == KernelLoadMode.BzImage ? "bzimage" : "decompress"));
        if (spec.Name != new VmSpecification().Name) args.Add("--name=" + spec.Name);
        return args;
    }

    /// <summary>The switches that tune the machine rather than define it: -A aside, the one-letter flags,
    /// -p pinning and -g. The management library keeps these as a VM's extra engine flags.</summary>
    public static IReadOnlyList<string> MachineFlags(VmSpecification spec, bool includeAcpi = true)
    {
        var args = new List<string>();
        void Flag(bool on, string flag) { if (on) args.Add(flag); }
        Flag(spec.Acpi && includeAcpi, "-A");
        Flag(spec.CoreDumpIncludesMemory, "-C");
        Flag(spec.StrictIo, "-e");
        Flag(spec.ExitOnHlt, "-H");
        Flag(spec.ExitOnPause, "-P");
        Flag(spec.RtcUtc, "-u");
        Flag(spec.IgnoreUnknownMsrs, "-w");
        Flag(spec.SingleVectorMsi, "-W");
        Flag(spec.X2Apic, "-x");
        Flag(!spec.MpTable, "-Y");
        if (spec.GdbPort is int port) args.AddRange(["-g", port.ToString(CultureInfo.InvariantCulture)]);
        foreach (var (vcpu, host) in spec.VcpuPinning.OrderBy(p => p.Key))
            args.AddRange(["-p", FormattableString.Invariant($"{vcpu}:{host}")]);
        return args;
    }

    /// <summary>The argument of -s: BUS:SLOT:FUNCTION,EMULATION[,OPTIONS].</summary>
    public static string FormatPciDevice(PciDeviceSpec d) =>
        FormattableString.Invariant($"{d.Address.Bus}:{d.Address.Slot}:{d.Address.Function},{d.Emulation}") + (d.Options != null ? "," + d.Options : "");

    /// <summary>Bytes as -m writes them: the largest unit that divides them exactly.</summary>
    public static string FormatSize(ulong bytes)
    {
        foreach (var (shift, unit) in new[] { (40, "T"), (30, "G"), (20, "M"), (10, "K") })
            if (bytes != 0 && bytes % (1UL << shift) == 0) return (bytes >> shift).ToString(CultureInfo.InvariantCulture) + unit;
        return bytes.ToString(CultureInfo.InvariantCulture) + "B";
    }

    public static string FormatFirmware(FirmwareSpec firmware) => firmware switch
    {
        KexecFirmware k => $"kexec,{k.Kernel},{k.Initrd}" + (k.CommandLine != null ? "," + k.CommandLine : ""),
        MultibootFirmware m => $"multiboot,{m.Kernel},{string.Join(":", m.Modules.Select(x => x.CommandLine != null ? $"{x.Path};{x.CommandLine}" : x.Path))}"
            + (m.CommandLine != null ? "," + m.CommandLine : ""),
        BootromFirmware b => $"bootrom,{b.Rom}" + (b.Vars != null ? "," + b.Vars : ""),
        FreeBsdFirmware f => $"fbsd,{f.Userboot},{f.BootVolume}" + (f.KernelEnv != null ? "," + f.KernelEnv : ""),
        _ => throw new ArgumentException($"unknown firmware {firmware.GetType().Name}", nameof(firmware)),
    };
}
