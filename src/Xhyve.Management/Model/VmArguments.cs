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
        devices.AddRange(vm.Disks.Select(d => new PciDeviceSpec(new PciAddress(0, d.Slot, 0), "virtio-blk", d.Path + (d.Options != null ? "," + d.Options : ""))));
        devices.AddRange(vm.NetworkAdapters.Select(n => new PciDeviceSpec(new PciAddress(0, n.Slot, 0), n.Emulation,
            string.Join(",", new[] { n.Options, n.MacAddress != null ? "mac=" + n.MacAddress : null }.Where(o => o != null)) is { Length: > 0 } o ? o : null)));
        FirmwareSpec firmware = vm.KernelPath != null
            ? new KexecFirmware(vm.KernelPath, vm.InitrdPath, vm.KernelCommandLine)
            : new MultibootFirmware(vm.MultibootPath!, vm.MultibootModules.Select(m => new Vmm.Boot.MultibootModule(m.Path, m.CommandLine)).ToList(), vm.KernelCommandLine);
        var spec = new VmSpecification
        {
            Name = vm.Name, Uuid = vm.Id, Vcpus = vm.ProcessorCount, MemoryBytes = (ulong)vm.MemoryStartupBytes, Acpi = vm.Acpi,
            PciDevices = devices, Firmware = firmware,
            Com1 = consoleLog != null ? [new SerialBackendSpec(SerialBackendKind.Log, consoleLog)] : null,
        };
        CheckExtraArguments(vm);
        var args = new List<string>(CommandLineFormatter.ToArguments(spec));
        args.AddRange(vm.ExtraArguments);
        // The extra arguments are the user's: make sure the whole line still parses before an engine sees it.
        try { CommandLineParser.Parse(args); }
        catch (CliException e) { throw new VmDefinitionException($"VM '{vm.Name}': ExtraArguments: {e.Message}"); }
        return args;
    }

    /// <summary>Extra arguments may tune the machine, not redefine what the VM object and the engine host own
    /// (a later -m or -f would silently win over the VM's settings; a second -F or control socket would lose the engine).</summary>
    private static void CheckExtraArguments(VirtualMachine vm)
    {
        CliResult extra;
        try { extra = CommandLineParser.Parse(vm.ExtraArguments); }
        catch (CliException e) { throw new VmDefinitionException($"VM '{vm.Name}': ExtraArguments: {e.Message}"); }
        var defaults = new VmSpecification();
        var owned = new List<string>();
        if (extra.Spec.Vcpus != defaults.Vcpus) owned.Add("-c (use ProcessorCount)");
        if (extra.Spec.MemoryBytes != defaults.MemoryBytes) owned.Add("-m (use MemoryStartupBytes)");
        if (extra.Spec.Firmware != null) owned.Add("-f (use KernelPath or MultibootPath)");
        if (extra.Spec.Uuid != null) owned.Add("-U (the VM's Id)");
        if (extra.Spec.Acpi) owned.Add("-A (use Acpi)");
        if (extra.Spec.Name != defaults.Name) owned.Add("--name (the VM's Name)");
        if (extra.Spec.Com1 != null) owned.Add("-l com1 (the VM's console log)");
        if (extra.Spec.PidFile != null || extra.ControlSocket != null || extra.ExitFile != null) owned.Add("-F, --control-socket and --exit-file (the engine host's files)");
        if (extra.Spec.PciDevices.Any(d => d.Emulation is "virtio-blk" or "virtio-net" or "virtio-tap")) owned.Add("disks and network adapters (use Disks and NetworkAdapters)");
        if (owned.Count > 0) throw new VmDefinitionException($"VM '{vm.Name}': ExtraArguments may not set {string.Join("; ", owned)}");
    }

    /// <summary>A VM from an xhyve command line (an xhyverun.sh argument list). Throws
    /// <see cref="VmDefinitionException"/> for a line the engine would refuse.</summary>
    public static ConvertedVm FromArguments(IReadOnlyList<string> args, string? name = null)
    {
        CliResult cli;
        try { cli = CommandLineParser.Parse(args); }
        catch (CliException e) { throw new VmDefinitionException(e.Message); }
        var spec = cli.Spec;
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
                    int comma = d.Options.IndexOf(',');
                    vm.Disks.Add(new VmDisk { Path = comma < 0 ? d.Options : d.Options[..comma], Options = comma < 0 ? null : d.Options[(comma + 1)..], Slot = d.Address.Slot });
                    break;
                case "virtio-net" or "virtio-tap" when plainSlot:
                    var options = (d.Options ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).ToList();
                    string? mac = options.FirstOrDefault(o => o.StartsWith("mac=", StringComparison.Ordinal));
                    if (mac != null) options.Remove(mac);
                    vm.NetworkAdapters.Add(new VmNetworkAdapter
                    {
                        Name = $"Network Adapter {vm.NetworkAdapters.Count + 1}", Slot = d.Address.Slot, Emulation = d.Emulation,
                        Options = options.Count > 0 ? string.Join(",", options) : null, MacAddress = mac?[4..],
                    });
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
