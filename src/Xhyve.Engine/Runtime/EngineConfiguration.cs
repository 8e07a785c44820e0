using Xhyve.Vmm;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Runtime;

/// <summary>A CD/DVD drive as the control API's <c>media</c> reports it.</summary>
/// <param name="Drive">BUS:SLOT:FUNCTION/PORT.</param>
/// <param name="Medium">The image in the drive (absolute path), or null when it is empty.</param>
/// <param name="Locked">The guest prevents medium removal (SCSI PREVENT ALLOW MEDIUM REMOVAL).</param>
public readonly record struct DriveMedium(string Drive, string? Medium, bool Locked);

/// <summary>
/// The specification every boot of the machine is built from, and the changes made to it while the engine runs:
/// CD/DVD media inserted or ejected through the control API. A change goes into the specification (so a reset keeps
/// it and <c>config</c> shows it) and into the drive of the machine that runs, if one does. Building a machine holds
/// changes off, so a change made meanwhile is either in the specification it is built from or reaches it once attached.
/// </summary>
public sealed class EngineConfiguration(VmSpecification spec, EngineLifecycle lifecycle)
{
    private readonly Lock _lock = new();
    private VmSpecification _spec = spec;

    public VmSpecification Spec { get { lock (_lock) return _spec; } }

    /// <summary>Builds the next machine from the current specification and attaches it to the lifecycle.</summary>
    public (Machine Machine, VmRunner Runner) BuildAndAttach(Func<VmSpecification, (Machine, VmRunner)> build)
    {
        lock (_lock)
        {
            var (machine, runner) = build(_spec);
            lifecycle.Attach(machine, runner);
            return (machine, runner);
        }
    }

    /// <summary>Every CD/DVD drive with its medium.</summary>
    public IReadOnlyList<DriveMedium> Drives()
    {
        lock (_lock)
        {
            var drives = new List<DriveMedium>();
            foreach (var d in _spec.PciDevices)
            {
                if (d.Device is not AhciSpec ahci) continue;
                for (int port = 0; port < ahci.Ports.Count; port++)
                {
                    if (ahci.Ports[port] is not AhciCdromPort cd) continue;
                    var live = LiveDrive(d.Address, port);
                    drives.Add(new DriveMedium(DriveName(d.Address, port), live != null ? live.MediumPath : cd.MediumPath, live?.Locked ?? false));
                }
            }
            return drives;
        }
    }

    /// <summary>Puts the image at <paramref name="path"/> into <paramref name="drive"/> (replacing any medium; the guest
    /// sees a unit attention), or with a null path empties the drive. Returns why it cannot, or null.</summary>
    /// <param name="drive">SLOT, SLOT:FUNCTION or BUS:SLOT:FUNCTION, optionally /PORT; null: the VM's only CD/DVD drive.</param>
    public string? ChangeMedium(string? drive, string? path)
    {
        lock (_lock)
        {
            if (FindDrive(drive, out var device, out var ahci, out int port) is { } problem) return problem;
            IBlockBackend? medium = null;
            if (path != null)
            {
                path = Path.GetFullPath(path);
                if (Directory.Exists(path)) return $"{path}: is a folder, not an image";
                if (!File.Exists(path)) return $"{path}: file not found";
                try { medium = VmBuilder.OpenMedium(path); }
                catch (StorageException e) { return e.Message; }
            }
            var ports = ahci.Ports.ToArray();
            ports[port] = new AhciCdromPort(path);
            var changed = device with { Options = (ahci with { Ports = ports }).Options };
            _spec = _spec with { PciDevices = _spec.PciDevices.Select(d => d.Address == device.Address ? changed : d).ToArray() };
            var live = LiveDrive(device.Address, port);
            if (live == null) medium?.Dispose();   // between boots: the next machine opens it from the specification
            else if (medium != null) live.Insert(medium);
            else live.Eject();
            return null;
        }
    }

    private string? FindDrive(string? drive, out PciDeviceSpec device, out AhciSpec ahci, out int port)
    {
        device = null!; ahci = null!; port = 0;
        if (drive == null)
        {
            var all = _spec.PciDevices.SelectMany(d => d.Device is AhciSpec a
                ? a.Ports.Select((p, i) => (d, a, p, i)).Where(x => x.p is AhciCdromPort) : []).ToList();
            if (all.Count != 1)
                return all.Count == 0 ? "the VM has no CD/DVD drive"
                    : $"the VM has {all.Count} CD/DVD drives ({string.Join(", ", all.Select(x => DriveName(x.d.Address, x.i)))}): name one, as in 'media {DriveName(all[0].d.Address, all[0].i)} eject'";
            (device, ahci, _, port) = all[0];
            return null;
        }
        if (!AhciDriveAddress.TryParse(drive, out var named))
            return $"{drive}: not a drive (SLOT, SLOT:FUNCTION or BUS:SLOT:FUNCTION, then /PORT if the controller has several)";
        var address = named.Controller;
        port = named.Port;
        var found = _spec.PciDevices.FirstOrDefault(d => d.Address == address);
        if (found == null) return $"{drive}: the VM has no device at {address}";
        if (found.Device is not AhciSpec a) return $"{drive}: {address} is {found.Emulation}, not a CD/DVD drive";
        if (port >= a.Ports.Count) return $"{drive}: the AHCI controller at {address} has {a.Ports.Count} port{(a.Ports.Count == 1 ? "" : "s")} (0-{a.Ports.Count - 1})";
        if (a.Ports[port] is not AhciCdromPort) return $"{drive}: {DriveName(address, port)} is a disk, not a CD/DVD drive";
        (device, ahci) = (found, a);
        return null;
    }

    private AtapiCdrom? LiveDrive(PciAddress address, int port)
    {
        var machine = lifecycle.Current?.Machine;
        if (machine == null) return null;
        foreach (var (at, controller) in machine.Ahci)
            if (at == address && port < controller.Drives.Count) return controller.Drives[port] as AtapiCdrom;
        return null;
    }

    public static string DriveName(PciAddress address, int port) => new AhciDriveAddress(address, port).ToString();
}
