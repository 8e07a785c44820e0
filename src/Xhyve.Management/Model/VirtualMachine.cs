using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Xhyve.Management.Model;

/// <summary>A multiboot module: a file and the command line the kernel sees for it.</summary>
public sealed record MultibootModuleDefinition(string Path, string? CommandLine = null);

/// <summary>A virtio-blk disk: an image file (raw, or split/sparse) in a PCI slot, with the engine's block
/// options (ro, sync, direct, nocache, sectorsize=, size=, split=, sparse).</summary>
public sealed class VmDisk
{
    public required string Path { get; set; }
    public int Slot { get; set; }
    /// <summary>Comma-separated block options after the path, as in -s SLOT,virtio-blk,PATH,OPTIONS; null for none.</summary>
    public string? Options { get; set; }
    [JsonIgnore] public bool ReadOnly => Options?.Split(',').Contains("ro") == true;
}

/// <summary>A network adapter definition (the device itself arrives with the networking work).</summary>
public sealed class VmNetworkAdapter
{
    public string Name { get; set; } = "Network Adapter";
    public int Slot { get; set; }
    /// <summary>The engine's emulation: virtio-net (user-mode networking) or virtio-tap (a host TAP device).</summary>
    public string Emulation { get; set; } = "virtio-net";
    /// <summary>Options after the emulation, e.g. tap0 for virtio-tap; null for none.</summary>
    public string? Options { get; set; }
    public string? MacAddress { get; set; }
}

/// <summary>
/// A VM as the management library keeps it: what it is (name, id), its machine (processors, memory,
/// ACPI), how it boots (a Linux kernel with initrd and command line, or a multiboot kernel with modules),
/// its disks and network adapters, and any further engine flags. Stored as JSON in the VM's folder.
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

    public List<VmDisk> Disks { get; set; } = [];
    public List<VmNetworkAdapter> NetworkAdapters { get; set; } = [];
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
        Count("multibootModules", MultibootModules.Count, MaxListCount);
        Count("disks", Disks.Count, MaxListCount);
        Count("networkAdapters", NetworkAdapters.Count, MaxListCount);
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
        for (int i = 0; i < NetworkAdapters.Count; i++)
        {
            Text($"networkAdapters[{i}].name", NetworkAdapters[i].Name, 256);
            Text($"networkAdapters[{i}].emulation", NetworkAdapters[i].Emulation, 64);
            Text($"networkAdapters[{i}].options", NetworkAdapters[i].Options, MaxTextLength);
            Text($"networkAdapters[{i}].macAddress", NetworkAdapters[i].MacAddress, 64);
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
        bool kexec = KernelPath != null, multiboot = MultibootPath != null;
        if (kexec && multiboot) problems.Add("KernelPath and MultibootPath: a VM boots one way; set one of them");
        if (!kexec && !multiboot) problems.Add("the VM has no boot kernel: set KernelPath (Linux) or MultibootPath");
        if (!kexec && (InitrdPath != null)) problems.Add("InitrdPath: needs KernelPath");
        if (!multiboot && MultibootModules.Count > 0) problems.Add("MultibootModule: needs MultibootPath");
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
        foreach (var n in NetworkAdapters)
        {
            Slot(n.Slot, $"network adapter '{n.Name}'");
            if (n.Emulation is not ("virtio-net" or "virtio-tap")) problems.Add($"network adapter '{n.Name}': emulation '{n.Emulation}' is not virtio-net or virtio-tap");
        }
        problems.AddRange(VmArguments.ExtraArgumentProblems(this));
        return problems;
    }

    private IEnumerable<(string What, string Path)> Paths()
    {
        if (KernelPath != null) yield return ("KernelPath", KernelPath);
        if (InitrdPath != null) yield return ("InitrdPath", InitrdPath);
        if (MultibootPath != null) yield return ("MultibootPath", MultibootPath);
        foreach (var m in MultibootModules) yield return ("MultibootModule", m.Path);
        foreach (var d in Disks) yield return ("disk Path", d.Path);
    }

    /// <summary>The lowest PCI slot from 2 up (xhyve's habit: 0 host bridge, 31 LPC) no disk or adapter uses.</summary>
    public int NextFreeSlot()
    {
        // Slots that extra -s devices take count too, or a new disk would be refused for sharing one.
        var used = Disks.Select(d => d.Slot).Concat(NetworkAdapters.Select(n => n.Slot)).Concat(VmArguments.ExtraSlots(this)).ToHashSet();
        for (int slot = 2; slot <= 30; slot++) if (!used.Contains(slot)) return slot;
        throw new VmDefinitionException($"VM '{Name}': every PCI slot from 2 to 30 is in use");
    }

    public VirtualMachine Clone() => VmJson.Deserialize(VmJson.Serialize(this), "(copy)");
}

/// <summary>A VM definition that cannot be used; the message names the setting and the problem.</summary>
public sealed class VmDefinitionException(string message) : Exception(message);
