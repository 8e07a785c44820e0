using System.Globalization;

namespace Xhyve.Vmm.Native;

/// <summary>The host's physical memory, for refusing a guest larger than the host (-m 16T) in words instead of
/// letting KVM_SET_USER_MEMORY_REGION fail with EINVAL.</summary>
public static class HostMemory
{
    /// <summary>MemTotal from /proc/meminfo in bytes, or null when it cannot be read (then nothing is refused).</summary>
    public static ulong? TotalBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return fields.Length >= 2 && ulong.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong kib)
                    ? kib * 1024 : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>"16 TiB", "1.5 GiB", "512 MiB": a size as people read it.</summary>
    public static string Describe(ulong bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        int u = 0;
        double value = bytes;
        while (value >= 1024 && u < units.Length - 1) { value /= 1024; u++; }
        return u == 0 ? $"{bytes} bytes" : value.ToString(value % 1 == 0 ? "0" : "0.#", CultureInfo.InvariantCulture) + " " + units[u];
    }
}
