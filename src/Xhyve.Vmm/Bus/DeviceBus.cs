namespace Xhyve.Vmm.Bus;

/// <summary>
/// Dispatches accesses by address range (port I/O or MMIO). Ranges may not overlap. Lookups are a
/// binary search over an immutable snapshot: no locks and no allocation on the exit path.
/// </summary>
public sealed class DeviceBus(string name)
{
    private sealed record Entry(ulong Start, ulong Length, IBusDevice Device, string Name);
    private Entry[] _entries = [];
    private readonly Lock _registerLock = new();

    public string Name => name;

    public void Register(ulong start, ulong length, IBusDevice device, string deviceName)
    {
        if (length == 0 || start + length < start)
            throw new ArgumentException($"{deviceName}: invalid {name} range 0x{start:X}+0x{length:X}");
        lock (_registerLock)
        {
            foreach (var e in _entries)
                if (start < e.Start + e.Length && e.Start < start + length)
                    throw new InvalidOperationException($"{deviceName}: {name} range 0x{start:X}-0x{start + length - 1:X} overlaps {e.Name} at 0x{e.Start:X}-0x{e.Start + e.Length - 1:X}");
            var next = _entries.Append(new Entry(start, length, device, deviceName)).OrderBy(e => e.Start).ToArray();
            Volatile.Write(ref _entries, next);
        }
    }

    public void Unregister(IBusDevice device)
    {
        lock (_registerLock)
            Volatile.Write(ref _entries, _entries.Where(e => !ReferenceEquals(e.Device, device)).ToArray());
    }

    private Entry? Find(ulong address, int length)
    {
        var entries = Volatile.Read(ref _entries);
        int lo = 0, hi = entries.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var e = entries[mid];
            if (address < e.Start) hi = mid - 1;
            else if (address - e.Start >= e.Length) lo = mid + 1;
            else return (ulong)length <= e.Length && address - e.Start <= e.Length - (ulong)length ? e : null; // must not straddle the end
        }
        return null;
    }

    /// <summary>Returns false when no device covers the access (the caller decides what that means).</summary>
    public bool Read(ulong address, Span<byte> data)
    {
        var e = Find(address, data.Length);
        if (e == null) return false;
        e.Device.Read(address - e.Start, data);
        return true;
    }

    public bool Write(ulong address, ReadOnlySpan<byte> data)
    {
        var e = Find(address, data.Length);
        if (e == null) return false;
        e.Device.Write(address - e.Start, data);
        return true;
    }

    /// <summary>The registered ranges, for diagnostics and tests.</summary>
    public IReadOnlyList<(ulong Start, ulong Length, string Name)> Ranges =>
        Volatile.Read(ref _entries).Select(e => (e.Start, e.Length, e.Name)).ToArray();
}
