namespace Xhyve.Fuzz;

/// <summary>Every fuzz target by name (the names bench/fuzz.sh, the corpus folders and docs/fuzzing.md use).</summary>
public static class Targets
{
    public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>
    {
        ["queue"] = QueueTarget.Run,
        ["blk"] = BlockTarget.Run,
        ["net"] = NetTarget.Run,
        ["pci"] = PciTarget.Run,
        ["ahci"] = AhciTarget.Run,
        ["atapi"] = AtapiTarget.Run,
        ["lut"] = LutTarget.Run,
        ["bzimage"] = BootTargets.BzImage,
        ["elf"] = BootTargets.Elf,
        ["cmdline"] = CommandLineTarget.Run,
        ["control"] = ControlTarget.Run,
    };
}
