using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>A PCI function on the root bus: its configuration space and the BARs it declared.</summary>
public interface IPciFunction
{
    string Name { get; }
    PciConfigSpace Config { get; }
    IReadOnlyList<PciBar> Bars { get; }
    /// <summary>Called after every guest configuration write (to follow MSI/MSI-X mask changes).</summary>
    void ConfigWritten(int offset, int width);
    /// <summary>Called when a BAR is mapped at <paramref name="address"/> or (null) unmapped.</summary>
    void BarMapped(PciBar bar, ulong? address);
}

/// <summary>Base of device models: declares BARs and capabilities; the platform places and maps them.</summary>
public abstract class PciDevice : IPciFunction
{
    private readonly List<PciBar> _bars = new();

    protected PciDevice(string name, PciConfigSpace config)
    {
        Name = name;
        Config = config;
    }

    public string Name { get; }
    public PciConfigSpace Config { get; }
    public IReadOnlyList<PciBar> Bars => _bars;

    /// <summary>Declares BAR <paramref name="index"/> (a 64-bit BAR takes two registers).</summary>
    protected PciBar AddBar(int index, PciBarKind kind, ulong size, IBusDevice handler, bool prefetchable = false)
    {
        if (size == 0 || (size & (size - 1)) != 0) throw new ArgumentException($"{Name}: BAR {index} size 0x{size:X} is not a power of two");
        if (kind == PciBarKind.Io && size < 4 || kind != PciBarKind.Io && size < 16) throw new ArgumentException($"{Name}: BAR {index} is too small");
        if (index < 0 || index > (kind == PciBarKind.Memory64 ? 4 : 5) || _bars.Any(b => b.Index == index || b.Kind == PciBarKind.Memory64 && b.Index + 1 == index))
            throw new ArgumentException($"{Name}: BAR {index} is not free");
        var bar = new PciBar(index, kind, size, prefetchable, handler, $"{Name} BAR{index}");
        bar.Define(Config);
        _bars.Add(bar);
        return bar;
    }

    public virtual void ConfigWritten(int offset, int width) { }

    public virtual void BarMapped(PciBar bar, ulong? address) { }
}

/// <summary>A function with nothing but its identity: host bridges and the LPC bridge.</summary>
public sealed class PciIdentityFunction(string name, PciConfigSpace config) : PciDevice(name, config)
{
    /// <summary>bhyve's "hostbridge": vendor/device 0x1275:0x1275, class 06/00.</summary>
    public static PciIdentityFunction HostBridge() => new("hostbridge", new PciConfigSpace(0x1275, 0x1275, 0x06, 0x00, 0x00));

    /// <summary>bhyve's "amd_hostbridge": 0x1022:0x7432.</summary>
    public static PciIdentityFunction AmdHostBridge() => new("amd_hostbridge", new PciConfigSpace(0x1022, 0x7432, 0x06, 0x00, 0x00));

    /// <summary>bhyve's "lpc": an Intel PIIX3-style ISA bridge (0x8086:0x7000), class 06/01.</summary>
    public static PciIdentityFunction LpcBridge() => new("lpc", new PciConfigSpace(0x8086, 0x7000, 0x06, 0x01, 0x00));
}
