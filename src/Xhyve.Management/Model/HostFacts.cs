using System.Globalization;

namespace Xhyve.Management.Model;

/// <summary>
/// What the host has that a VM definition is checked against before it is stored or started. Guest RAM is mapped
/// lazily (pages are allocated as the guest touches them), so any size up to the host's physical memory is accepted,
/// even with other VMs running; beyond it the guest could never have what it was promised.
/// </summary>
public static class HostFacts
{
    private const string MemInfo = "/proc/meminfo";

    /// <summary>The host's physical memory in bytes (/proc/meminfo MemTotal), or null where it cannot be read.</summary>
    public static long? MemoryTotalBytes()
    {
        try { return ParseMemTotal(File.ReadAllText(MemInfo)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>MemTotal from /proc/meminfo's text ("MemTotal:  16318464 kB"), in bytes; null when the line is missing or malformed.</summary>
    public static long? ParseMemTotal(string meminfo)
    {
        foreach (var line in meminfo.Split('\n'))
        {
            if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
            var parts = line["MemTotal:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // The kernel always writes kB (KiB) here.
            if (parts.Length == 2 && parts[1] == "kB" && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) && kb <= long.MaxValue / 1024)
                return kb * 1024;
            return null;
        }
        return null;
    }

    /// <summary>The problem with giving a guest <paramref name="memoryBytes"/> on a host with <paramref name="hostBytes"/>
    /// of physical memory, naming both; null when it fits (or the host's size is unknown).</summary>
    public static string? MemoryProblem(long memoryBytes, long? hostBytes) =>
        hostBytes is long host && memoryBytes > host
            ? $"MemoryStartupBytes {FormatSize(memoryBytes)} is more than this host's physical memory ({FormatSize(host)}, MemTotal in {MemInfo})"
            : null;

    /// <summary>Refuses a VM whose memory is more than this host's physical memory, naming both sizes.</summary>
    /// <exception cref="VmDefinitionException">The VM's MemoryStartupBytes is above MemTotal.</exception>
    public static void CheckMemory(VirtualMachine vm)
    {
        if (MemoryProblem(vm.MemoryStartupBytes, MemoryTotalBytes()) is { } problem)
            throw new VmDefinitionException($"VM '{vm.Name}': {problem}");
    }

    /// <summary>A size in MB below 1 GB and in GB (to 0.1) from there, in binary units as PowerShell's 1MB and 1GB.</summary>
    public static string FormatSize(long bytes) => bytes >= 1L << 30
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.#} GB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.#} MB");
}
