using Xhyve.Vmm;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;

namespace Xhyve.Engine.Runtime;

/// <summary>--verbose: what was built, in lines a person (or a test) can read.</summary>
public static class MachineReport
{
    public static IEnumerable<string> Describe(Machine machine)
    {
        yield return $"{(machine.Rom != null ? "firmware" : "kernel")} {machine.Kernel.Description}";
        yield return $"memory {string.Join(", ", machine.Memory.Regions.Select(r => $"0x{r.Start.Value:x}/0x{r.Size:x}"))}";
        foreach (var (address, f) in machine.Pci.Functions.OrderBy(kv => (kv.Key.Bus, kv.Key.Slot, kv.Key.Function)))
        {
            var parts = new List<string> { $"pci {address} {f.Name} {f.Config.Vendor:x4}:{f.Config.Device:x4}" };
            foreach (var bar in f.Bars.OrderBy(b => b.Index))
                parts.Add($"bar{bar.Index}=0x{bar.Address(f.Config):x}/0x{bar.Size:x}");
            var caps = Capabilities(f.Config).ToList();
            if (caps.Count > 0) parts.Add("caps=" + string.Join(",", caps.Select(c => $"0x{c:x2}")));
            if (f.Bars.Count > 0)
            {
                int gsi = Vmm.Firmware.Acpi.PlatformLayout.PciGsi(address.Slot, 0);
                parts.Add($"intx=gsi{gsi},irq{f.Config.Read(PciConfigSpace.InterruptLine, 1)}");
            }
            if (f is VirtioPciDevice v) parts.Add($"doorbells={(v.DoorbellsInHypervisor > 0 ? "ioeventfd" : "exit")}");
            yield return string.Join(" ", parts);
        }
    }

    /// <summary>Device counters at exit (--verbose).</summary>
    public static IEnumerable<string> Counters(Machine machine) =>
        DeviceCounters(machine).Select(d => $"{d.Device}: " + string.Join(" ", d.Counters.Select(c => $"{c.Key}={c.Value}")));

    /// <summary>Each device's counters, in a fixed order (the --verbose lines and the control API's "counters").</summary>
    public static IEnumerable<(string Device, IReadOnlyList<KeyValuePair<string, long>> Counters)> DeviceCounters(Machine machine)
    {
        foreach (var v in machine.Virtio) yield return (v.Name, v.Counters.ToList());
        foreach (var (_, ahci) in machine.Ahci) yield return (ahci.Name, ahci.Counters.ToList());
    }

    private static IEnumerable<byte> Capabilities(PciConfigSpace config)
    {
        if ((config.ReadWord(PciConfigSpace.Status) & PciConfigSpace.StatusCapabilities) == 0) yield break;
        int at = config.Read(PciConfigSpace.CapabilitiesPointer, 1) is var p ? (int)p & 0xFC : 0;
        for (int n = 0; at != 0 && n < 48; n++)
        {
            yield return (byte)config.Read(at, 1);
            at = (int)config.Read(at + 1, 1) & 0xFC;
        }
    }
}
