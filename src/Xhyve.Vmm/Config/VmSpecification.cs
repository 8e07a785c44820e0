using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Serial;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Config;

/// <summary>How the guest is booted (xhyve's -f).</summary>
public abstract record FirmwareSpec;

/// <summary>-f kexec,KERNEL[,INITRD][,CMDLINE]</summary>
public sealed record KexecFirmware(string Kernel, string? Initrd, string? CommandLine, KernelLoadMode LoadMode = KernelLoadMode.Auto) : FirmwareSpec;

/// <summary>-f multiboot,KERNEL[,MODULE[;CMD][:MODULE[;CMD]]...][,CMDLINE]</summary>
public sealed record MultibootFirmware(string Kernel, IReadOnlyList<MultibootModule> Modules, string? CommandLine) : FirmwareSpec;

/// <summary>-l bootrom,CODE[,VARS] (bhyve's spelling; -f bootrom,CODE[,VARS] too): a firmware ROM (SeaBIOS, OVMF's
/// code) mapped read-only below 4 GiB, and for UEFI a variable store the guest writes through a CFI flash.</summary>
/// <param name="Rom">The ROM image (OVMF_CODE.fd, bios.bin).</param>
/// <param name="Vars">The UEFI variable store (a copy of OVMF_VARS.fd), or null for none.</param>
public sealed record BootromFirmware(string Rom, string? Vars = null) : FirmwareSpec
{
    /// <summary>The largest variable store the flash window takes (QEMU's OVMF stores are 128 KiB to 4 MiB).</summary>
    public const long MaxVarsBytes = 16L << 20;

    /// <summary>The store's size unit: CFI erase blocks of OVMF's flash are 4 KiB.</summary>
    public const long VarsGranule = 4096;

    /// <summary>Every problem with the variable store: it must exist, be a readable and writable regular file, be a
    /// whole number of 4 KiB blocks no larger than 16 MiB, and not be the ROM itself. Each names the file. Nothing
    /// is written.</summary>
    public IReadOnlyList<string> VarsProblems()
    {
        var problems = new List<string>();
        if (Vars == null) return problems;
        string what = $"-l bootrom: variable store {Vars}";
        if (Vars.Length == 0) { problems.Add("-l bootrom: the variable store path is empty"); return problems; }
        if (Directory.Exists(Vars)) { problems.Add($"{what}: is a directory"); return problems; }
        if (!File.Exists(Vars)) { problems.Add($"{what}: file not found"); return problems; }
        long length = new FileInfo(Vars).Length;
        if (length == 0 || length % VarsGranule != 0)
            problems.Add($"{what}: {length} bytes is not a whole number of 4 KiB flash blocks (copy OVMF_VARS.fd)");
        else if (length > MaxVarsBytes)
            problems.Add($"{what}: {length} bytes is more than the 16 MiB a flash store may have");
        try { using (new FileStream(Vars, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite)) { } }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            problems.Add($"{what}: cannot be opened for reading and writing (the guest saves its UEFI variables there): {e.Message}");
        }
        if (Native.OutputFiles.SameFile(Rom, Vars))
            problems.Add($"{what}: is the ROM {Rom} itself; give the guest its own copy of the variable store");
        return problems;
    }
}

/// <summary>-f fbsd,USERBOOT,BOOTVOLUME[,KERNELENV]. Not supported yet.</summary>
public sealed record FreeBsdFirmware(string Userboot, string BootVolume, string? KernelEnv) : FirmwareSpec;

/// <summary>One -s SLOT,EMULATION[,CONFIG]: where the device goes, as written, and what it is, parsed once
/// (<see cref="Device"/>).</summary>
public sealed record PciDeviceSpec
{
    private readonly string _emulation = "";
    private readonly string? _options;
    private DeviceSpec? _device;

    public PciDeviceSpec(PciAddress address, string emulation, string? options) =>
        (Address, Emulation, Options) = (address, emulation, options);

    public PciAddress Address { get; init; }
    public string Emulation { get => _emulation; init { _emulation = value; _device = null; } }
    public string? Options { get => _options; init { _options = value; _device = null; } }

    /// <summary>The emulation and options as a typed record, parsed on first use and kept (a <c>with</c> that
    /// changes them parses again).</summary>
    public DeviceSpec Device => _device ??= DeviceSpec.Parse(this);

    public void Deconstruct(out PciAddress address, out string emulation, out string? options) =>
        (address, emulation, options) = (Address, Emulation, Options);

    // Equal when written the same: the parsed record is derived from these three.
    public bool Equals(PciDeviceSpec? other) =>
        other is not null && Address.Equals(other.Address) && Emulation == other.Emulation && Options == other.Options;

    public override int GetHashCode() => HashCode.Combine(Address, Emulation, Options);

    public override string ToString() => $"-s {Address.Bus}:{Address.Slot}:{Address.Function},{Emulation}{(Options != null ? "," + Options : "")}";
}

/// <summary>
/// Everything that defines one VM: produced by the xhyve command-line parser (and later by the
/// management library's VM objects) and consumed by <see cref="VmBuilder"/>.
/// </summary>
public sealed record VmSpecification
{
    public const ulong DefaultMemory = 256UL << 20;
    public const ulong MinimumMemory = 2UL << 20;

    public string Name { get; init; } = "xhyve";
    public int Vcpus { get; init; } = 1;
    public ulong MemoryBytes { get; init; } = DefaultMemory;
    public bool Acpi { get; init; }
    public bool MpTable { get; init; } = true;
    public Guid? Uuid { get; init; }

    /// <summary>-U, else the UUID derived from the VM's name and the host's (SMBIOS and stable MACs use it).</summary>
    public Guid EffectiveUuid => Uuid ?? Xhyve.Vmm.Firmware.Smbios.SmbiosTables.DefaultUuid(Name, Environment.MachineName);

    /// <summary>Each network adapter with the MAC it gets (mac= or the stable one), in -s order: what -M prints.</summary>
    public IEnumerable<(PciDeviceSpec Device, MacAddress Mac)> NetworkAdapters =>
        PciDevices.Where(d => d.Device is VirtioNetSpec).Select(d => (d, ((VirtioNetSpec)d.Device).Options.MacFor(EffectiveUuid, d.Address)));
    public FirmwareSpec? Firmware { get; init; }
    public IReadOnlyList<SerialBackendSpec>? Com1 { get; init; }
    public IReadOnlyList<SerialBackendSpec>? Com2 { get; init; }
    public IReadOnlyList<PciDeviceSpec> PciDevices { get; init; } = [];
    public IReadOnlyDictionary<int, int> VcpuPinning { get; init; } = new Dictionary<int, int>();
    /// <summary>-e: unhandled I/O stops the VM instead of reading all-ones.</summary>
    public bool StrictIo { get; init; }
    /// <summary>-u: RTC in UTC.</summary>
    public bool RtcUtc { get; init; }
    public bool ExitOnHlt { get; init; }
    public bool ExitOnPause { get; init; }
    public bool IgnoreUnknownMsrs { get; init; }
    public bool SingleVectorMsi { get; init; }
    public bool X2Apic { get; init; }
    public bool CoreDumpIncludesMemory { get; init; }
    public string? PidFile { get; init; }
    public int? GdbPort { get; init; }

    /// <summary>Every problem with the specification, each naming the flag and what is wrong.</summary>
    /// <param name="hostMaxVcpus">KVM's vCPU limit on this host.</param>
    /// <param name="hostMemoryBytes">The host's RAM: a guest cannot have more (KVM would refuse it with a bare EINVAL).</param>
    /// <param name="checkFiles">False to leave out what depends on the files named (that they exist, and the disk images'
    /// geometry): for a line converted on one machine to be checked for its files where it will run.</param>
    public IReadOnlyList<string> Validate(int hostMaxVcpus = int.MaxValue, ulong hostMemoryBytes = ulong.MaxValue, bool checkFiles = true)
    {
        var problems = new List<string>();
        if (Vcpus < 1) problems.Add($"-c {Vcpus}: at least one vCPU is needed");
        else if (Vcpus > hostMaxVcpus) problems.Add($"-c {Vcpus}: exceeds the host limit of {hostMaxVcpus} vCPUs");
        if (MemoryBytes < MinimumMemory) problems.Add($"-m: {MemoryBytes} bytes is below the minimum of {MinimumMemory >> 20} MiB");
        if (MemoryBytes % 4096 != 0) problems.Add($"-m: {MemoryBytes} bytes is not a multiple of 4 KiB");
        if (MemoryBytes > hostMemoryBytes)
            problems.Add($"-m: {Native.HostMemory.Describe(MemoryBytes)} is more than this host's memory ({Native.HostMemory.Describe(hostMemoryBytes)})");

        switch (Firmware)
        {
            case null: problems.Add("-f: no firmware or kernel given (e.g. -f kexec,vmlinuz,initrd.gz,\"console=ttyS0\")"); break;
            case BootromFirmware b:
                if (string.IsNullOrEmpty(b.Rom) || checkFiles) { if (Boot.BootRom.Problem(b.Rom) is { } romProblem) problems.Add(romProblem); }
                if (checkFiles) problems.AddRange(b.VarsProblems());
                break;
            case FreeBsdFirmware: problems.Add("-f fbsd: FreeBSD userboot is not supported yet"); break;
            case KexecFirmware k:
                RequireFile(checkFiles, problems, "-f kexec: kernel", k.Kernel);
                if (k.Initrd != null) RequireFile(checkFiles, problems, "-f kexec: initrd", k.Initrd);
                break;
            case MultibootFirmware m:
                RequireFile(checkFiles, problems, "-f multiboot: kernel", m.Kernel);
                foreach (var mod in m.Modules) RequireFile(checkFiles, problems, "-f multiboot: module", mod.Path);
                break;
        }

        var seen = new Dictionary<PciAddress, PciDeviceSpec>();
        var disks = new Dictionary<string, PciDeviceSpec>();
        var nets = new NetworkConflicts();
        foreach (var d in PciDevices)
        {
            if (!d.Address.IsValid) { problems.Add($"{d}: bus:slot:function out of range (bus 0-255, slot 0-31, function 0-7)"); continue; }
            if (seen.TryGetValue(d.Address, out var other)) problems.Add($"{d}: slot {d.Address} is already used by {other.Emulation}");
            else seen[d.Address] = d;
            var device = d.Device;
            if (device is UnsupportedDeviceSpec unsupported) problems.Add(unsupported.Problem);
            if (d.Emulation == "lpc" && d.Address.Bus != 0) problems.Add($"{d}: lpc must be on bus 0");
            if (device is InvalidDeviceSpec invalid) problems.Add(invalid.Problem);
            if (device is VirtioBlockSpec disk) ValidateDisk(checkFiles, problems, d, disk.Options, disks);
            if (device is AhciSpec ahci) ValidateAhci(checkFiles, problems, d, ahci, disks);
            if (device is VirtioNetSpec net && d.Address.IsValid) nets.Check(problems, d, net.Options.MacFor(EffectiveUuid, d.Address), net.Options);
        }
        if (PciDevices.Count(d => d.Emulation == "lpc") > 1) problems.Add("-s lpc: only one LPC bridge is allowed");
        ValidateChipset(problems);
        bool hasLpc = PciDevices.Any(d => d.Emulation == "lpc");
        if ((Com1 != null || Com2 != null) && !hasLpc) problems.Add("-l com1/com2: the COM ports live on the LPC bridge; add -s 31,lpc");

        int stdioOwners = new[] { Com1, Com2 }.Count(c => c?.Any(b => b.Kind == SerialBackendKind.Stdio) == true)
            + PciDevices.Count(d => d.Emulation == "uart" && (d.Options ?? "").Split(',').Contains("stdio"));
        if (stdioOwners > 1) problems.Add("-l: stdio can be used by only one device");
        foreach (var (vcpu, host) in VcpuPinning)
        {
            if (vcpu < 0 || vcpu >= Vcpus) problems.Add($"-p {vcpu}:{host}: vCPU {vcpu} does not exist (the VM has {Vcpus})");
            if (host < 0 || host >= Environment.ProcessorCount) problems.Add($"-p {vcpu}:{host}: host CPU {host} does not exist (the host has {Environment.ProcessorCount})");
        }
        if (GdbPort != null) problems.Add($"-g {GdbPort}: the gdb stub is not supported yet");
        return problems;
    }

    /// <summary>The chipset a host bridge's model= names (what OVMF checks) is the one at 0:0.0, with its PM function
    /// where the firmware reads it: the PIIX4 PM function at 0:1.3 (added by the engine, so that slot must be free),
    /// or the ICH9 LPC bridge at 0:31.0 (the -s 31,lpc the COM ports need anyway).</summary>
    private void ValidateChipset(List<string> problems)
    {
        var models = PciDevices.Where(d => d.Device is HostBridgeSpec { Model: not HostBridgeModel.Bhyve }).ToList();
        if (models.Count == 0) return;
        if (models.Count > 1) { problems.Add($"{models[1]}: only one host bridge can name a chipset (already {models[0]})"); return; }
        var bridge = models[0];
        var model = ((HostBridgeSpec)bridge.Device).Model;
        if (bridge.Address != new PciAddress(0, 0, 0)) problems.Add($"{bridge}: a chipset's host bridge must be at 0:0:0, where firmware reads it");
        if (model == HostBridgeModel.I440fx && PciDevices.FirstOrDefault(d => d.Address == Devices.Chipset.ChipsetFunctions.Piix4PmAddress) is { } taken)
            problems.Add($"{taken}: 0:1:3 is the PIIX4 power-management function of {bridge}");
        if (model == HostBridgeModel.Q35 && !PciDevices.Any(d => d.Device is LpcSpec && d.Address == Devices.Chipset.ChipsetFunctions.Ich9LpcAddress))
            problems.Add($"{bridge}: Q35's ICH9 LPC bridge (the PM base firmware reads) must be at 0:31:0; add -s 31,lpc");
    }

    private static void ValidateDisk(bool checkFiles, List<string> problems, PciDeviceSpec d, BlockDeviceOptions disk, Dictionary<string, PciDeviceSpec> disks)
    {
        string full = Path.GetFullPath(disk.Path);
        if (disks.TryGetValue(full, out var other)) problems.Add($"{d}: {disk.Path} is already the disk of {other}");
        else disks[full] = d;
        if (!checkFiles) return;
        // The image must exist unless size= asks for a new one, and options given must agree with its geometry
        // (read from its descriptor or its files), so a contradiction is refused before anything starts.
        if (Directory.Exists(disk.Path)) { problems.Add($"{d}: {disk.Path} is a directory"); return; }
        try { ImageGeometry.Resolve(disk); }
        catch (DiskImageException e) when (e.Problem == DiskImageProblem.NotFound) { problems.Add($"{d}: image {disk.Path} not found (give size= to create one)"); }
        catch (DiskImageException e) { problems.Add($"{d}: {e.Message}"); }
    }

    private static void ValidateAhci(bool checkFiles, List<string> problems, PciDeviceSpec d, AhciSpec ahci, Dictionary<string, PciDeviceSpec> disks)
    {
        foreach (var port in ahci.Ports)
        {
            if (port is AhciDiskPort disk) ValidateDisk(checkFiles, problems, d, disk.Options, disks);
            else if (port is AhciCdromPort { MediumPath: { } medium }) RequireFile(checkFiles, problems, $"{d}: medium", medium);
        }
    }

    /// <summary>What two network adapters may not share: a MAC, a TAP device, a forwarded host port.</summary>
    private sealed class NetworkConflicts
    {
        private readonly Dictionary<string, PciDeviceSpec> _owners = new();

        public void Check(List<string> problems, PciDeviceSpec d, MacAddress mac, NetDeviceOptions net)
        {
            Claim(problems, d, "mac " + mac, $"MAC address {mac}");
            if (net.TapName is { } tap) Claim(problems, d, "tap " + tap, $"TAP device {tap}");
            foreach (var f in net.PortForwards) Claim(problems, d, $"fwd {f.Protocol}:{f.HostPort}", $"host port {f.Protocol}:{f.HostPort}");
        }

        private void Claim(List<string> problems, PciDeviceSpec d, string key, string what)
        {
            if (_owners.TryGetValue(key, out var other)) problems.Add($"{d}: {what} is already used by {other}");
            else _owners[key] = d;
        }
    }

    private static void RequireFile(bool checkFiles, List<string> problems, string what, string path)
    {
        if (string.IsNullOrEmpty(path)) problems.Add($"{what}: no path given");
        else if (!checkFiles) return;
        else if (Directory.Exists(path)) problems.Add($"{what} {path}: is a directory");
        else if (!File.Exists(path)) problems.Add($"{what} {path}: file not found");
    }
}
