using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Serial;

namespace Xhyve.Management.Model;

/// <summary>A VM converted from an xhyve command line, and what of that line it could not keep.</summary>
public sealed record ConvertedVm(VirtualMachine Vm, IReadOnlyList<string> Warnings);

/// <summary>
/// VM objects and xhyve command lines, both ways. A VM always has the host bridge in slot 0 and the LPC
/// bridge in slot 31 (xhyverun.sh's "minimum PCI config that works"); its first serial port goes to the
/// console log the engine host writes in the VM's folder.
/// </summary>
public static class VmArguments
{
    /// <summary>The engine's arguments for <paramref name="vm"/>, with com1 logged to <paramref name="consoleLog"/>.</summary>
    public static IReadOnlyList<string> ToArguments(VirtualMachine vm, string? consoleLog)
    {
        var problems = vm.Validate();
        if (problems.Count > 0) throw new VmDefinitionException($"VM '{vm.Name}': {string.Join("; ", problems)}");
        var devices = new List<PciDeviceSpec>
        {
            new(new PciAddress(0, 0, 0), "hostbridge", null),
            new(new PciAddress(0, 31, 0), "lpc", null),
        };
        devices.AddRange(vm.Disks.Select(d => new PciDeviceSpec(new PciAddress(0, d.Slot, 0), d.Emulation, d.Path + (d.Options != null ? "," + d.Options : ""))));
        devices.AddRange(vm.NetworkAdapters.Select(n => new PciDeviceSpec(n.PciAddress, "virtio-net", n.ToOptions().ToString())));
        devices.AddRange(vm.DvdDrives.Select(d => new PciDeviceSpec(new PciAddress(0, d.Slot, 0), "ahci-cd", d.Path)));
        FirmwareSpec firmware = vm.KernelPath != null
            ? new KexecFirmware(vm.KernelPath, vm.InitrdPath, vm.KernelCommandLine)
            : new MultibootFirmware(vm.MultibootPath!, vm.MultibootModules.Select(m => new Vmm.Boot.MultibootModule(m.Path, m.CommandLine)).ToList(), vm.KernelCommandLine);
        var spec = new VmSpecification
        {
            Name = vm.Name, Uuid = vm.Id, Vcpus = vm.ProcessorCount, MemoryBytes = (ulong)vm.MemoryStartupBytes, Acpi = vm.Acpi,
            PciDevices = devices, Firmware = firmware,
            Com1 = consoleLog != null ? [new SerialBackendSpec(SerialBackendKind.Log, consoleLog)] : null,
        };
        var args = new List<string>(CommandLineFormatter.ToArguments(spec));
        args.AddRange(vm.ExtraArguments);
        // The extra arguments are the user's: make sure the whole line still parses before an engine sees it.
        try { CommandLineParser.Parse(args); }
        catch (CliException e) { throw new VmDefinitionException($"VM '{vm.Name}': ExtraArguments: {e.Message}"); }
        return args;
    }

    /// <summary>One option as the engine reads it out of ExtraArguments: "-m" or "--name", its value, and the words it
    /// was written as (for messages).</summary>
    private readonly record struct ExtraOption(string Flag, string? Value, string Written);

    /// <summary>The options in <paramref name="extra"/>, word by word as the engine's getopt-style parser splits them
    /// (combined flags "-uA", attached values "-c2", "--name=x"). Words that are not options are skipped here; the
    /// whole-line parse reports them.</summary>
    private static IEnumerable<ExtraOption> Options(IReadOnlyList<string> extra)
    {
        for (int i = 0; i < extra.Count; i++)
        {
            string word = extra[i] ?? "";
            if (word.StartsWith("--", StringComparison.Ordinal))
            {
                int eq = word.IndexOf('=');
                string name = eq > 0 ? word[..eq] : word;
                string? value = eq > 0 ? word[(eq + 1)..] : CommandLineParser.TakesValue(name) && i + 1 < extra.Count ? extra[++i] : null;
                yield return new(name, value, eq < 0 && value != null ? $"{word} {value}" : word);
                continue;
            }
            if (word.Length < 2 || word[0] != '-') continue;
            for (int j = 1; j < word.Length; j++)
            {
                char flag = word[j];
                if (!CommandLineParser.TakesValue("-" + flag)) { yield return new("-" + flag, null, word); continue; }
                string? value = j + 1 < word.Length ? word[(j + 1)..] : i + 1 < extra.Count ? extra[++i] : null;
                yield return new("-" + flag, value, j + 1 < word.Length || value == null ? word : $"{word} {value}");
                break;
            }
        }
    }

    /// <summary>The bus-0, function-0 slots that -s options in ExtraArguments place devices in (bad -s values are
    /// left to the whole-line parse).</summary>
    internal static IEnumerable<int> ExtraSlots(VirtualMachine vm)
    {
        foreach (var o in Options(vm.ExtraArguments))
        {
            if (o.Flag != "-s" || o.Value == null) continue;
            PciDeviceSpec device;
            try { device = CommandLineParser.ParsePciDevice(o.Value); }
            catch (CliException) { continue; }
            if (device.Address.Bus == 0 && device.Address.Function == 0) yield return device.Address.Slot;
        }
    }

    /// <summary>Every extra argument that would redefine what the VM object or the engine host owns, each naming the
    /// argument: the engine takes the last of two -m, so an extra -m would silently win over MemoryStartupBytes
    /// (even one equal to today's value would win after the next Set-XhyveVM), and a second -F or control socket
    /// would lose the engine. Checked whenever a VM is stored and again before its engine starts.</summary>
    internal static IReadOnlyList<string> ExtraArgumentProblems(VirtualMachine vm)
    {
        var problems = new List<string>();
        var slots = new Dictionary<int, string> { [0] = "the host bridge", [31] = "the LPC bridge" };
        foreach (var d in vm.Disks) slots.TryAdd(d.Slot, $"disk {d.Path}");
        foreach (var n in vm.NetworkAdapters) slots.TryAdd(n.Slot, $"network adapter '{n.Name}'");
        foreach (var d in vm.DvdDrives) slots.TryAdd(d.Slot, VirtualMachine.DvdDriveName(d));
        foreach (var o in Options(vm.ExtraArguments))
        {
            string? owner = o.Flag switch
            {
                "-c" => "the processor count belongs to the VM; set ProcessorCount",
                "-m" => "the memory size belongs to the VM; set MemoryStartupBytes",
                "-A" => "ACPI belongs to the VM; set Acpi",
                "-U" => "the UUID is the VM's Id",
                "-f" => "the boot kernel belongs to the VM; set KernelPath or MultibootPath",
                "--name" => "the name is the VM's Name",
                "-F" or "--control-socket" or "--exit-file" => "the engine host keeps the pid file, control socket and exit file in the VM's folder",
                "-h" or "-v" or "-M" or "--help" or "--version" => "the engine would print information and exit instead of running the VM",
                "-l" when o.Value?.Split(',')[0].ToLowerInvariant() == "com1" => "com1 is the VM's console log",
                "-l" when o.Value?.Split(',')[0].ToLowerInvariant() == "bootrom" => "the boot firmware belongs to the VM; set KernelPath or MultibootPath",
                "-s" => SlotOwner(o.Value, slots),
                _ => null,
            };
            if (owner != null) problems.Add($"ExtraArguments '{o.Written}': {owner}");
        }
        return problems;
    }

    private static string? SlotOwner(string? value, Dictionary<int, string> slots)
    {
        PciDeviceSpec device;
        try { device = CommandLineParser.ParsePciDevice(value ?? ""); }
        catch (CliException) { return null; }   // the whole-line parse names it
        if (device.Emulation is "virtio-blk" or "virtio-net" or "virtio-tap" or "hostbridge" or "lpc" or "ahci-hd" or "ahci-cd" or "ahci")
            return $"{device.Emulation} devices belong to the VM; use its Disks, NetworkAdapters and DvdDrives (the bridges are always there)";
        var a = device.Address;
        return a.Bus == 0 && a.Function == 0 && slots.TryGetValue(a.Slot, out var owner) ? $"slot {a.Slot} is {owner}'s" : null;
    }

    private static VmDisk Disk(string pathAndOptions, int slot, DiskControllerType controller)
    {
        int comma = pathAndOptions.IndexOf(',');
        return new VmDisk
        {
            Path = comma < 0 ? pathAndOptions : pathAndOptions[..comma], Options = comma < 0 ? null : pathAndOptions[(comma + 1)..],
            Slot = slot, ControllerType = controller,
        };
    }

    /// <summary>An AHCI controller, as the engine's own parser read it (-s N,ahci-hd,PATH[,opts], -s N,ahci-cd[,PATH] and
    /// bhyve's -s N,ahci,hd:PATH[,opts],cd:[PATH]): a VM object gives each disk and DVD drive a controller of its own, so
    /// a controller with one port becomes an AHCI disk or a DVD drive, and one with more is refused, naming the way to
    /// write it. A drive's ro is dropped: it is always read-only.</summary>
    private static void AddAhci(VirtualMachine vm, PciDeviceSpec d)
    {
        var ahci = d.Device switch
        {
            AhciSpec a => a,
            InvalidDeviceSpec bad => throw new VmDefinitionException(bad.Problem),
            var other => throw new VmDefinitionException($"{d}: not an AHCI controller ({other.GetType().Name})"),
        };
        if (ahci.Ports.Count > 1)
            throw new VmDefinitionException($"{d}: {ahci.Ports.Count} ports on one AHCI controller; a VM object gives each disk and DVD drive a controller of its own: write each port as its own -s SLOT,ahci-hd,PATH or -s SLOT,ahci-cd,PATH");
        switch (ahci.Ports[0])
        {
            case AhciDiskPort:
                // The path and options as written (after hd: in bhyve's spelling), as a virtio-blk disk keeps them.
                vm.Disks.Add(Disk(d.Emulation == "ahci" ? d.Options![3..] : d.Options!, d.Address.Slot, DiskControllerType.AHCI));
                break;
            case AhciCdromPort cd:
                vm.DvdDrives.Add(new VmDvdDrive { Path = cd.MediumPath, Slot = d.Address.Slot });
                break;
        }
    }

    /// <summary>A VM from an xhyve command line (an xhyverun.sh argument list). Throws
    /// <see cref="VmDefinitionException"/> for a line the engine would refuse, with the engine's words; the files it
    /// names are not looked for here (the line may come from another machine: storing the VM checks them).</summary>
    public static ConvertedVm FromArguments(IReadOnlyList<string> args, string? name = null)
    {
        CliResult cli;
        try { cli = CommandLineParser.Parse(args); }
        catch (CliException e) { throw new VmDefinitionException(e.Message); }
        var spec = cli.Spec;
        // The engine's own checks of the line as written (slots, COM ports without the LPC bridge, -p, -g, MACs...), so a
        // line it would refuse is refused now rather than when the VM first starts.
        if (spec.Firmware == null) throw new VmDefinitionException("the command line has no -f: a VM needs a kernel to boot");
        if (cli.Action == CliAction.Run && spec.Validate(checkFiles: false) is { Count: > 0 } refused)
            throw new VmDefinitionException(string.Join("; ", refused));
        var warnings = new List<string>();
        var vm = new VirtualMachine
        {
            Name = name ?? spec.Name,
            Id = spec.Uuid ?? Guid.NewGuid(),
            ProcessorCount = spec.Vcpus,
            MemoryStartupBytes = (long)spec.MemoryBytes,
            Acpi = spec.Acpi,
        };
        switch (spec.Firmware)
        {
            case KexecFirmware k:
                (vm.KernelPath, vm.InitrdPath, vm.KernelCommandLine) = (k.Kernel, k.Initrd, k.CommandLine);
                if (k.LoadMode != Vmm.Boot.KernelLoadMode.Auto)
                    vm.ExtraArguments.Add("--kernel-load=" + (k.LoadMode == Vmm.Boot.KernelLoadMode.BzImage ? "bzimage" : "decompress"));
                break;
            case MultibootFirmware m:
                (vm.MultibootPath, vm.KernelCommandLine) = (m.Kernel, m.CommandLine);
                vm.MultibootModules.AddRange(m.Modules.Select(x => new MultibootModuleDefinition(x.Path, x.CommandLine)));
                break;
            case null:
                throw new VmDefinitionException("the command line has no -f: a VM needs a kernel to boot");
            default:
                throw new VmDefinitionException($"-f {CommandLineFormatter.FormatFirmware(spec.Firmware)}: only kexec and multiboot boot is supported for VM objects");
        }
        vm.ExtraArguments.InsertRange(0, CommandLineFormatter.MachineFlags(spec, includeAcpi: false));
        foreach (var d in spec.PciDevices)
        {
            bool plainSlot = d.Address.Bus == 0 && d.Address.Function == 0;
            switch (d.Emulation)
            {
                case "hostbridge" when plainSlot && d.Address.Slot == 0:
                case "lpc" when plainSlot && d.Address.Slot == 31:
                    break;   // every VM has them
                case "virtio-blk" when plainSlot && d.Options != null:
                    vm.Disks.Add(Disk(d.Options, d.Address.Slot, DiskControllerType.VirtIO));
                    break;
                case "ahci-hd" or "ahci-cd" or "ahci" when plainSlot:
                    AddAhci(vm, d);
                    break;
                case "virtio-net" or "virtio-tap" when plainSlot:
                    // Every spelling (bare, user, tap=, mac=, hostfwd=, xhyve's virtio-tap,tapN) was parsed once, by the engine's parser.
                    var options = d.Device switch
                    {
                        VirtioNetSpec net => net.Options,
                        InvalidDeviceSpec bad => throw new VmDefinitionException(bad.Problem),
                        var other => throw new VmDefinitionException($"{d}: not a network adapter ({other.GetType().Name})"),
                    };
                    vm.NetworkAdapters.Add(VmNetworkAdapter.FromOptions($"Network Adapter {vm.NetworkAdapters.Count + 1}", d.Address.Slot, options));
                    break;
                default:
                    vm.ExtraArguments.AddRange(["-s", CommandLineFormatter.FormatPciDevice(d)]);
                    break;
            }
        }
        if (spec.Com1 != null)
            warnings.Add($"-l com1,{string.Join(",", spec.Com1)}: a managed VM's com1 goes to its console log (Get-XhyveConsoleOutput, Connect-XhyveVM)");
        if (spec.Com2 != null) vm.ExtraArguments.AddRange(["-l", "com2," + string.Join(",", spec.Com2)]);
        if (spec.PidFile != null) warnings.Add($"-F {spec.PidFile}: a managed VM keeps its pid file in its folder");
        if (cli.ControlSocket != null || cli.ExitFile != null) warnings.Add("--control-socket/--exit-file: a managed VM keeps these in its folder");
        var problems = vm.Validate();
        if (problems.Count > 0) throw new VmDefinitionException(string.Join("; ", problems));
        return new ConvertedVm(vm, warnings);
    }
}
