using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Pci;

namespace Xhyve.Management.Model;

/// <summary>A multiboot module: a file and the command line the kernel sees for it.</summary>
public sealed record MultibootModuleDefinition(string Path, string? CommandLine = null);

/// <summary>The controller a disk is attached to, as Hyper-V's ControllerType names IDE and SCSI.</summary>
public enum DiskControllerType
{
    /// <summary>A virtio-blk device (-s SLOT,virtio-blk,PATH): the fastest, for guests with virtio drivers.</summary>
    VirtIO,
    /// <summary>A SATA disk on its own AHCI controller (-s SLOT,ahci-hd,PATH), for guests with no virtio drivers.</summary>
    AHCI,
}

/// <summary>A disk: an image file (raw, or split/sparse) in a PCI slot, on a virtio-blk or AHCI controller, with the
/// engine's block options (ro, sync, direct, nocache, sectorsize=, size=, split=, sparse).</summary>
public sealed class VmDisk
{
    public required string Path { get; set; }
    public int Slot { get; set; }
    /// <summary>Comma-separated block options after the path, as in -s SLOT,virtio-blk,PATH,OPTIONS; null for none.</summary>
    public string? Options { get; set; }

    /// <summary>VirtIO (the default) or AHCI. Not written for VirtIO, so a vm.json without AHCI disks stays what older
    /// versions of the module read (they refuse fields they do not know); a missing field means VirtIO.</summary>
    [JsonConverter(typeof(ControllerTypeConverter))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public DiskControllerType ControllerType { get; set; }

    [JsonIgnore] public bool ReadOnly => Options?.Split(',').Contains("ro") == true;

    /// <summary>The engine's emulation for the disk: virtio-blk or ahci-hd.</summary>
    [JsonIgnore] public string Emulation => ControllerType == DiskControllerType.AHCI ? "ahci-hd" : "virtio-blk";

    // Written as its name; a number (even an undefined one) is refused.
    private sealed class ControllerTypeConverter() : JsonStringEnumConverter<DiskControllerType>(namingPolicy: null, allowIntegerValues: false);
}

/// <summary>A CD/DVD drive: an ATAPI drive on its own AHCI controller in a PCI slot (-s SLOT,ahci-cd[,PATH]), always
/// read-only, holding an ISO image or empty.</summary>
public sealed class VmDvdDrive
{
    /// <summary>The ISO image in the drive, or null for an empty drive.</summary>
    public string? Path { get; set; }
    public int Slot { get; set; }

    /// <summary>The drive as the engine's control API names it (its controller's PCI address and port): 0:SLOT:0/0.</summary>
    [JsonIgnore] public string Drive => FormattableString.Invariant($"0:{Slot}:0/0");
}

/// <summary>Where a network adapter's MAC address comes from.</summary>
public enum MacAddressSource
{
    /// <summary>Derived from the VM's Id and the adapter's slot (<see cref="Vmm.Config.MacAddress.Derive"/>): the same on
    /// every start and every host, and another for another slot.</summary>
    Stable,
    /// <summary>Set on the adapter (<see cref="VmNetworkAdapter.MacAddress"/>).</summary>
    Static,
}

/// <summary>
/// A virtio-net adapter: user-mode networking through passt (DHCP, DNS, NAT and port forwards, no root) or a host
/// TAP device. The engine gets it as -s SLOT,virtio-net,<see cref="ToOptions"/>. Stored in vm.json as mode,
/// tapName, macAddress and portForwards; the older emulation/options pair is read and converted
/// (<see cref="UpgradeLegacyFields"/>).
/// </summary>
public sealed class VmNetworkAdapter
{
    public string Name { get; set; } = "Network Adapter";
    public int Slot { get; set; }

    /// <summary>User (the default) or Tap.</summary>
    [JsonConverter(typeof(ModeConverter))]
    public NetBackendKind Mode { get; set; } = NetBackendKind.User;

    /// <summary>The host TAP device, e.g. tap0; set exactly when <see cref="Mode"/> is Tap.</summary>
    public string? TapName { get; set; }

    /// <summary>A fixed MAC address (xx:xx:xx:xx:xx:xx), or null for the stable one (<see cref="EffectiveMacAddress"/>).</summary>
    public string? MacAddress { get; set; }

    /// <summary>Host ports forwarded into the guest (Mode User only), in the module's spelling
    /// PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT, e.g. tcp:8080:80 (QEMU's tcp:8080-:80 is read too).</summary>
    public List<string> PortForwards { get; set; } = [];

    /// <summary>Queue pairs on a multiqueue TAP (the engine's queues=N), or null for one per processor where the TAP
    /// allows it.</summary>
    public int? QueuePairs { get; set; }

    // The vm.json form before typed fields: "emulation" (virtio-net or virtio-tap) and the engine options after it.
    [JsonInclude, JsonPropertyName("emulation")] internal string? LegacyEmulation { get; set; }
    [JsonInclude, JsonPropertyName("options")] internal string? LegacyOptions { get; set; }

    [JsonIgnore] public PciAddress PciAddress => new(0, Slot, 0);

    [JsonIgnore] public MacAddressSource MacAddressSource => MacAddress != null ? MacAddressSource.Static : MacAddressSource.Stable;

    /// <summary>The address the guest sees in VM <paramref name="vmId"/>: <see cref="MacAddress"/>, or the one the engine
    /// derives from the VM's Id (its -U) and this slot, so it can be shown before the VM first starts.</summary>
    /// <exception cref="FormatException">MacAddress is not a unicast MAC address.</exception>
    public MacAddress EffectiveMacAddress(Guid vmId) => ToOptions().MacFor(vmId, PciAddress);

    /// <summary>The engine's options for this adapter, checked by the engine's own parser.</summary>
    /// <exception cref="FormatException">Names the setting and its value.</exception>
    public NetDeviceOptions ToOptions()
    {
        if (!Enum.IsDefined(Mode)) throw new FormatException($"Mode {(int)Mode}: not User or Tap");
        if (Mode == NetBackendKind.Tap && TapName == null) throw new FormatException("Mode Tap needs a TapName (the host TAP device, e.g. tap0)");
        if (Mode == NetBackendKind.User && TapName != null) throw new FormatException($"TapName '{TapName}': only an adapter in Mode Tap has a TAP device");
        var values = new List<(string Setting, string Value)>();
        if (TapName != null) values.Add(("TapName", TapName));
        if (MacAddress != null) values.Add(("MacAddress", MacAddress));
        values.AddRange(PortForwards.Select(f => ("PortForwards", f)));
        // The options are one comma-separated string: a comma inside a value would read as a further option.
        foreach (var (setting, value) in values)
            if (value.Contains(',')) throw new FormatException($"{setting} '{value}': cannot contain ','");
        var options = new List<string> { Mode == NetBackendKind.Tap ? "tap=" + TapName : "user" };
        if (MacAddress != null) options.Add("mac=" + MacAddress);
        options.AddRange(PortForwards.Select(f => "hostfwd=" + f));
        if (QueuePairs is { } q) options.Add("queues=" + q.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return NetDeviceOptions.Parse(string.Join(",", options));
    }

    /// <summary>The adapter for engine options as <see cref="NetDeviceOptions.Parse"/> reads them (the inverse of <see cref="ToOptions"/>).</summary>
    public static VmNetworkAdapter FromOptions(string name, int slot, NetDeviceOptions options) => new()
    {
        Name = name, Slot = slot, Mode = options.Backend, TapName = options.TapName, MacAddress = options.Mac?.ToString(),
        PortForwards = options.PortForwards.Select(FormatPortForward).ToList(), QueuePairs = options.Queues,
    };

    /// <summary>The module's spelling of a forward, PROTOCOL:[ADDRESS:]HOSTPORT:GUESTPORT (an IPv6 address in brackets),
    /// which <see cref="PortForward.Parse"/> reads back.</summary>
    public static string FormatPortForward(PortForward f) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{f.Protocol}:{(f.HostAddress is { } a ? (a.Contains(':') ? $"[{a}]" : a) + ":" : "")}{f.HostPort}:{f.GuestPort}");

    /// <summary>Converts the emulation/options pair an older vm.json holds into the typed fields, so such a file keeps
    /// loading (and is written in the new form on its next save).</summary>
    /// <exception cref="FormatException">The old fields do not describe an adapter, or are mixed with the new ones.</exception>
    internal void UpgradeLegacyFields()
    {
        if (LegacyEmulation == null && LegacyOptions == null) return;
        if (Mode != NetBackendKind.User || TapName != null || PortForwards.Count > 0)
            throw new FormatException("'emulation'/'options' (the older form) cannot be mixed with 'mode', 'tapName' or 'portForwards'");
        bool tap = LegacyEmulation switch
        {
            null or "virtio-net" => false,
            "virtio-tap" => true,
            _ => throw new FormatException($"emulation '{LegacyEmulation}': not virtio-net or virtio-tap"),
        };
        NetDeviceOptions options;
        try { options = NetDeviceOptions.Parse(LegacyOptions, tap); }
        catch (FormatException e) { throw new FormatException($"options '{LegacyOptions}': {e.Message}", e); }
        if (options.Mac != null && MacAddress != null)
            throw new FormatException($"options '{LegacyOptions}': mac= is given there and in 'macAddress' ({MacAddress})");
        var typed = FromOptions(Name, Slot, options);
        (Mode, TapName, PortForwards, MacAddress) = (typed.Mode, typed.TapName, typed.PortForwards, MacAddress ?? typed.MacAddress);
        (LegacyEmulation, LegacyOptions) = (null, null);
    }

    // Mode is written as its name; a number (which the default converter would take, even an undefined one) is refused.
    private sealed class ModeConverter() : JsonStringEnumConverter<NetBackendKind>(namingPolicy: null, allowIntegerValues: false);
}

/// <summary>
/// A VM as the management library keeps it: what it is (name, id), its machine (processors, memory,
/// ACPI), how it boots (a Linux kernel with initrd and command line, or a multiboot kernel with modules),
/// its disks, network adapters and DVD drives, and any further engine flags. Stored as JSON in the VM's folder.
/// </summary>
public sealed class VirtualMachine
{
    public const long DefaultMemoryStartupBytes = 256L << 20;
    private static readonly Regex NamePattern = new("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", RegexOptions.CultureInvariant);

    public required string Name { get; set; }
    public Guid Id { get; set; } = Guid.NewGuid();
    public int ProcessorCount { get; set; } = 1;
    public long MemoryStartupBytes { get; set; } = DefaultMemoryStartupBytes;
    public bool Acpi { get; set; } = true;

    public string? KernelPath { get; set; }
    public string? InitrdPath { get; set; }
    public string? KernelCommandLine { get; set; }
    public string? MultibootPath { get; set; }
    public List<MultibootModuleDefinition> MultibootModules { get; set; } = [];

    /// <summary>A firmware ROM the VM boots from instead of a kernel (the engine's -l bootrom,CODE): SeaBIOS's bios.bin,
    /// or OVMF's code image for UEFI.</summary>
    public string? BootRomPath { get; set; }

    /// <summary>The UEFI variable store template (OVMF_VARS_4M.fd) the VM's own store was copied from, or null when the
    /// VM has none. The copy is <see cref="UefiVariablesFile"/> in the VM's folder: made when the VM is created or the
    /// template changes, written by the guest's firmware, removed with the VM, never shared.</summary>
    public string? UefiVariablesTemplatePath { get; set; }

    /// <summary>The VM's own UEFI variable store, in its folder.</summary>
    public const string UefiVariablesFile = "uefi-vars.fd";

    /// <summary>Hyper-V's generation: 2 for a UEFI VM (a boot ROM with a variable store), else 1.</summary>
    [JsonIgnore] public int Generation => UefiVariablesTemplatePath != null ? 2 : 1;

    public List<VmDisk> Disks { get; set; } = [];
    public List<VmNetworkAdapter> NetworkAdapters { get; set; } = [];

    /// <summary>The CD/DVD drives, each on its own AHCI controller.</summary>
    [JsonIgnore] public List<VmDvdDrive> DvdDrives { get; set; } = [];

    // Stored only when there are drives, so a VM without any keeps the vm.json older versions of the module read
    // (they refuse fields they do not know).
    [JsonInclude, JsonPropertyName("dvdDrives")]
    internal List<VmDvdDrive>? StoredDvdDrives { get => DvdDrives.Count > 0 ? DvdDrives : null; set => DvdDrives = value ?? []; }
    /// <summary>Further xhyve arguments, kept verbatim (e.g. "-u", "-w", "-s", "5,virtio-rnd", "-l", "com2,autopty").</summary>
    public List<string> ExtraArguments { get; set; } = [];

    public DateTime CreatedUtc { get; set; } = DateTime.UtcNow;
    /// <summary>Incremented by the store on every save; a save based on an older version is refused.</summary>
    public int Version { get; set; }

    public static bool IsValidName(string? name) => name != null && NamePattern.IsMatch(name);

    // Far above any real definition, and small enough that a damaged or hostile vm.json cannot make every
    // Get-XhyveVM (or a message quoting the value) huge.
    public const int MaxPathLength = 4095, MaxTextLength = 4096, MaxListCount = 64, MaxExtraArguments = 256;

    /// <summary>The values longer (or lists longer) than a VM definition may hold, each naming its vm.json field; checked
    /// when vm.json is read, so a damaged file is refused before any of its values is used or quoted.</summary>
    public IReadOnlyList<string> LimitProblems()
    {
        var problems = new List<string>();
        void Text(string field, string? value, int max)
        {
            if (value != null && value.Length > max) problems.Add($"field '{field}': {value.Length} characters, more than the {max} allowed");
        }
        void Count(string field, int count, int max)
        {
            if (count > max) problems.Add($"field '{field}': {count} entries, more than the {max} allowed");
        }
        Text("name", Name, 255);   // 63 is the rule (Validate); past 255 it is not even quoted
        Text("kernelPath", KernelPath, MaxPathLength);
        Text("initrdPath", InitrdPath, MaxPathLength);
        Text("kernelCommandLine", KernelCommandLine, MaxTextLength);
        Text("multibootPath", MultibootPath, MaxPathLength);
        Text("bootRomPath", BootRomPath, MaxPathLength);
        Text("uefiVariablesTemplatePath", UefiVariablesTemplatePath, MaxPathLength);
        Count("multibootModules", MultibootModules.Count, MaxListCount);
        Count("disks", Disks.Count, MaxListCount);
        Count("networkAdapters", NetworkAdapters.Count, MaxListCount);
        Count("dvdDrives", DvdDrives.Count, MaxListCount);
        Count("extraArguments", ExtraArguments.Count, MaxExtraArguments);
        if (problems.Count > 0) return problems;   // the lists themselves are too long to walk through
        // JSON null inside a list is not refused by the serializer's nullable annotations.
        void Entries<T>(string field, List<T> list)
        {
            for (int i = 0; i < list.Count; i++) if (list[i] is null) problems.Add($"field '{field}[{i}]': null");
        }
        Entries("multibootModules", MultibootModules);
        Entries("disks", Disks);
        Entries("networkAdapters", NetworkAdapters);
        Entries("dvdDrives", DvdDrives);
        Entries("extraArguments", ExtraArguments);
        if (problems.Count > 0) return problems;
        for (int i = 0; i < MultibootModules.Count; i++)
        {
            Text($"multibootModules[{i}].path", MultibootModules[i].Path, MaxPathLength);
            Text($"multibootModules[{i}].commandLine", MultibootModules[i].CommandLine, MaxTextLength);
        }
        for (int i = 0; i < Disks.Count; i++)
        {
            Text($"disks[{i}].path", Disks[i].Path, MaxPathLength);
            Text($"disks[{i}].options", Disks[i].Options, MaxTextLength);
        }
        for (int i = 0; i < DvdDrives.Count; i++) Text($"dvdDrives[{i}].path", DvdDrives[i].Path, MaxPathLength);
        for (int i = 0; i < NetworkAdapters.Count; i++)
        {
            var n = NetworkAdapters[i];
            Text($"networkAdapters[{i}].name", n.Name, 256);
            Text($"networkAdapters[{i}].tapName", n.TapName, 64);
            Text($"networkAdapters[{i}].macAddress", n.MacAddress, 64);
            Text($"networkAdapters[{i}].emulation", n.LegacyEmulation, 64);
            Text($"networkAdapters[{i}].options", n.LegacyOptions, MaxTextLength);
            if (n.PortForwards.Count > MaxListCount) { Count($"networkAdapters[{i}].portForwards", n.PortForwards.Count, MaxListCount); continue; }
            Entries($"networkAdapters[{i}].portForwards", n.PortForwards);
            for (int j = 0; j < n.PortForwards.Count; j++) Text($"networkAdapters[{i}].portForwards[{j}]", n.PortForwards[j], 256);
        }
        for (int i = 0; i < ExtraArguments.Count; i++) Text($"extraArguments[{i}]", ExtraArguments[i], MaxTextLength);
        return problems;
    }

    /// <summary>Every problem with this definition, each naming the setting and the value; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>(LimitProblems());
        if (problems.Count > 0) return problems;   // the checks below would quote the oversized values
        if (!IsValidName(Name))
            problems.Add($"Name '{Name}': use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit");
        if (ProcessorCount is < 1 or > 255) problems.Add($"ProcessorCount {ProcessorCount}: must be 1 to 255");
        if (MemoryStartupBytes < 2L << 20) problems.Add($"MemoryStartupBytes {MemoryStartupBytes}: must be at least 2 MB");
        else if (MemoryStartupBytes % 4096 != 0) problems.Add($"MemoryStartupBytes {MemoryStartupBytes}: must be a multiple of 4 KB");
        bool kexec = KernelPath != null, multiboot = MultibootPath != null, rom = BootRomPath != null;
        var ways = new[] { (kexec, "KernelPath"), (multiboot, "MultibootPath"), (rom, "BootRomPath") }.Where(w => w.Item1).Select(w => w.Item2).ToList();
        if (ways.Count > 1) problems.Add($"{string.Join(" and ", ways)}: a VM boots one way; set one of them");
        if (ways.Count == 0) problems.Add("the VM has no boot kernel or firmware: set KernelPath (Linux), MultibootPath or BootRomPath");
        if (!kexec && (InitrdPath != null)) problems.Add("InitrdPath: needs KernelPath");
        if (!multiboot && MultibootModules.Count > 0) problems.Add("MultibootModule: needs MultibootPath");
        if (rom && ways.Count == 1 && KernelCommandLine != null) problems.Add("KernelCommandLine: a VM booting from a boot ROM has no kernel command line");
        if (UefiVariablesTemplatePath != null && !rom) problems.Add("UefiVariablesTemplatePath: needs BootRomPath (the UEFI firmware that keeps its variables there)");
        // xhyve's -f and -s separate fields with commas (and multiboot modules with ':' and ';').
        foreach (var (what, path) in Paths())
            if (path.Length == 0 || path.IndexOfAny([',', ':', ';', '\n']) >= 0)
                problems.Add($"{what} '{path}': a path for the engine cannot be empty or contain ',', ':', ';' or a newline");
        var slots = new Dictionary<int, string> { [0] = "the host bridge", [31] = "the LPC bridge" };
        void Slot(int slot, string what)
        {
            if (slot is < 1 or > 30) problems.Add($"{what}: slot {slot} is not free for devices (1 to 30)");
            else if (!slots.TryAdd(slot, what)) problems.Add($"{what}: slot {slot} is already used by {slots[slot]}");
        }
        foreach (var d in Disks) Slot(d.Slot, $"disk {d.Path}");
        foreach (var n in NetworkAdapters) Slot(n.Slot, $"network adapter '{n.Name}'");
        foreach (var d in DvdDrives) Slot(d.Slot, DvdDriveName(d));
        foreach (var d in Disks)
            if (!Enum.IsDefined(d.ControllerType)) problems.Add($"disk {d.Path}: ControllerType {(int)d.ControllerType} is not VirtIO or AHCI");
        problems.AddRange(NetworkAdapterProblems());
        problems.AddRange(VmArguments.ExtraArgumentProblems(this));
        return problems;
    }

    /// <summary>Each adapter's settings, and what two adapters may not share: a name (cmdlets find adapters by it), the MAC
    /// the guest sees (static or stable), a TAP device, a forwarded host port. The engine refuses the last three too, but
    /// only when the VM starts, and naming -s arguments rather than adapters.</summary>
    private List<string> NetworkAdapterProblems()
    {
        var problems = new List<string>();
        var owners = new Dictionary<string, string>();
        foreach (var n in NetworkAdapters)
        {
            string adapter = $"network adapter '{n.Name}'";
            if (string.IsNullOrWhiteSpace(n.Name)) problems.Add($"{adapter}: the name cannot be empty");
            else if (!owners.TryAdd("name " + n.Name, n.Name)) problems.Add($"{adapter}: another adapter of the VM has that name");
            NetDeviceOptions options;
            try { options = n.ToOptions(); }
            catch (FormatException e) { problems.Add($"{adapter}: {e.Message}"); continue; }
            var claims = new List<(string Key, string What)>();
            var mac = options.MacFor(Id, n.PciAddress);
            claims.Add(("mac " + mac, $"MAC address {mac}{(n.MacAddress == null ? " (its stable one)" : "")}"));
            if (options.TapName != null) claims.Add(("tap " + options.TapName, $"TAP device {options.TapName}"));
            claims.AddRange(options.PortForwards.Select(f => ($"port {f.Protocol} {f.HostAddress} {f.HostPort}", $"host port {f.Protocol}:{f.HostPort}")));
            foreach (var (key, what) in claims)
                if (!owners.TryAdd(key, n.Name)) problems.Add($"{adapter}: {what} is already used by network adapter '{owners[key]}'");
        }
        return problems;
    }

    private IEnumerable<(string What, string Path)> Paths()
    {
        if (KernelPath != null) yield return ("KernelPath", KernelPath);
        if (InitrdPath != null) yield return ("InitrdPath", InitrdPath);
        if (MultibootPath != null) yield return ("MultibootPath", MultibootPath);
        if (BootRomPath != null) yield return ("BootRomPath", BootRomPath);
        if (UefiVariablesTemplatePath != null) yield return ("UefiVariablesTemplatePath", UefiVariablesTemplatePath);
        foreach (var m in MultibootModules) yield return ("MultibootModule", m.Path);
        foreach (var d in Disks) yield return ("disk Path", d.Path);
        foreach (var d in DvdDrives) if (d.Path != null) yield return ("DVD drive Path", d.Path);
    }

    /// <summary>How messages name a DVD drive: by its slot, and its ISO when it holds one.</summary>
    internal static string DvdDriveName(VmDvdDrive d) =>
        FormattableString.Invariant($"DVD drive in slot {d.Slot}") + (d.Path != null ? $" ({d.Path})" : " (empty)");

    /// <summary>The lowest PCI slot from 2 up (xhyve's habit: 0 host bridge, 31 LPC) no disk, adapter or DVD drive uses.</summary>
    public int NextFreeSlot()
    {
        // Slots that extra -s devices take count too, or a new disk would be refused for sharing one.
        var used = Disks.Select(d => d.Slot).Concat(NetworkAdapters.Select(n => n.Slot)).Concat(DvdDrives.Select(d => d.Slot)).Concat(VmArguments.ExtraSlots(this)).ToHashSet();
        for (int slot = 2; slot <= 30; slot++) if (!used.Contains(slot)) return slot;
        throw new VmDefinitionException($"VM '{Name}': every PCI slot from 2 to 30 is in use");
    }

    public VirtualMachine Clone() => VmJson.Deserialize(VmJson.Serialize(this), "(copy)");
}

/// <summary>A VM definition that cannot be used; the message names the setting and the problem.</summary>
public sealed class VmDefinitionException(string message) : Exception(message);
