namespace Xhyve.Vmm.Config;

/// <summary>One port of an AHCI controller: a disk with its block options, or a CD/DVD drive with its medium (null: empty).</summary>
public abstract record AhciPortSpec
{
    /// <summary>The port as bhyve's ahci spelling writes it ("hd:PATH,opts" or "cd:PATH").</summary>
    public abstract string Format();
}

/// <summary>A SATA disk: the options of virtio-blk (<see cref="BlockDeviceOptions"/>).</summary>
public sealed record AhciDiskPort(BlockDeviceOptions Options) : AhciPortSpec
{
    public override string Format() => "hd:" + Options;
}

/// <summary>A CD/DVD drive; always read-only. <paramref name="MediumPath"/> null is an empty drive.</summary>
public sealed record AhciCdromPort(string? MediumPath) : AhciPortSpec
{
    public override string Format() => "cd:" + MediumPath;
}

/// <summary>
/// The ports of one AHCI controller, parsed from the three spellings: ahci-hd,PATH[,opts] and ahci-cd[,PATH] (one port,
/// xhyve's) and ahci,hd:PATH[,opts],cd:[PATH]... (bhyve's newer one: an item starting hd: or cd: starts a port and the
/// items after it are that port's options).
/// </summary>
public static class AhciDeviceOptions
{
    public const int MaxPorts = 32;

    /// <exception cref="FormatException">Names the item and what is wrong with it.</exception>
    public static IReadOnlyList<AhciPortSpec> Parse(string emulation, string? text)
    {
        text ??= "";
        switch (emulation)
        {
            case "ahci-hd": return [new AhciDiskPort(BlockDeviceOptions.Parse(text))];
            case "ahci-cd": return [ParseCdrom(text.Split(','))];
            case "ahci": break;
            default: throw new ArgumentException($"not an AHCI emulation: {emulation}", nameof(emulation));
        }
        var items = text.Split(',');
        if (text.Length == 0) throw new FormatException("no ports given (e.g. ahci,hd:disk.img,cd:install.iso)");
        var ports = new List<AhciPortSpec>();
        int start = 0;
        while (start < items.Length)
        {
            string first = items[start];
            if (!first.StartsWith("hd:", StringComparison.Ordinal) && !first.StartsWith("cd:", StringComparison.Ordinal))
                throw new FormatException($"{first}: expected a port, hd:PATH or cd:[PATH]");
            int end = start + 1;
            while (end < items.Length && !items[end].StartsWith("hd:", StringComparison.Ordinal) && !items[end].StartsWith("cd:", StringComparison.Ordinal)) end++;
            var port = items[start..end];
            port[0] = first[3..];
            ports.Add(first[0] == 'h' ? new AhciDiskPort(BlockDeviceOptions.ParseOptions(RequirePath(port[0], first), port.AsSpan(1))) : ParseCdrom(port));
            if (ports.Count > MaxPorts) throw new FormatException($"{first}: an AHCI controller has at most {MaxPorts} ports");
            start = end;
        }
        return ports;
    }

    /// <summary>The options text that parses back to <paramref name="ports"/> under <paramref name="emulation"/>.</summary>
    public static string? Format(string emulation, IReadOnlyList<AhciPortSpec> ports) => emulation switch
    {
        "ahci-hd" => ((AhciDiskPort)ports[0]).Options.ToString(),
        "ahci-cd" => ((AhciCdromPort)ports[0]).MediumPath,
        _ => string.Join(',', ports.Select(p => p.Format())),
    };

    // A CD takes its path and nothing else but ro (it is read-only anyway: xhyve scripts write ahci-cd,x.iso,ro).
    private static AhciCdromPort ParseCdrom(string[] items)
    {
        foreach (var option in items.AsSpan(1))
            if (option is not ("ro" or ""))
                throw new FormatException($"{option}: a CD/DVD drive takes only an image path (and ro; it is always read-only)");
        return new AhciCdromPort(items[0].Length == 0 ? null : items[0]);
    }

    private static string RequirePath(string path, string item) =>
        path.Length > 0 ? path : throw new FormatException($"{item}: no image path given (e.g. hd:disk.img)");
}

/// <summary>A drive behind an AHCI controller: the controller's PCI address and the port, written BUS:SLOT:FUNCTION/PORT
/// (as the control API's media command reports drives; it accepts SLOT, SLOT:FUNCTION or BUS:SLOT:FUNCTION, with /PORT
/// optional).</summary>
public readonly record struct AhciDriveAddress(Devices.Pci.PciAddress Controller, int Port)
{
    public override string ToString() => $"{Controller}/{Port}";

    /// <summary>Parses a drive as -s writes the controller's address, with an optional /PORT (port 0 when absent);
    /// false when the text is not one or a number is out of range.</summary>
    public static bool TryParse(string text, out AhciDriveAddress drive)
    {
        drive = default;
        int slash = text.IndexOf('/');
        int port = 0;
        if (slash >= 0 && !int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port))
            return false;
        if (!Devices.Pci.PciAddress.TryParse(slash < 0 ? text : text[..slash], out var address) || !address.IsValid || port >= AhciDeviceOptions.MaxPorts)
            return false;
        drive = new AhciDriveAddress(address, port);
        return true;
    }
}
