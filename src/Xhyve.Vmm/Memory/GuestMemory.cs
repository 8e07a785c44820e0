using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Memory;

/// <summary>
/// Guest RAM backed by anonymous host mappings, one per region. Pages are committed on first
/// touch, so a 1 GiB guest that uses 10 MiB costs 10 MiB.
/// </summary>
public sealed unsafe class GuestMemory : IGuestMemory, IDisposable
{
    private readonly MemoryRegion[] _regions;
    private readonly nint[] _hosts;

    public ulong Size { get; }
    public IReadOnlyList<MemoryRegion> Regions => _regions;

    /// <summary>Host address of region <paramref name="index"/> (for the hypervisor's memory slots).</summary>
    public nint HostAddress(int index) => _hosts[index];

    /// <param name="regions">Guest-physical ranges of RAM.</param>
    /// <param name="includeInCoreDump">-C: keep guest RAM in a core dump of the engine.</param>
    public GuestMemory(IReadOnlyList<MemoryRegion> regions, bool includeInCoreDump = false)
    {
        _regions = regions.ToArray();
        _hosts = new nint[_regions.Length];
        try
        {
            for (int i = 0; i < _regions.Length; i++)
            {
                var size = (nuint)_regions[i].Size;
                nint p = LibC.Mmap(0, size, LibC.PROT_READ | LibC.PROT_WRITE,
                    LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS | LibC.MAP_NORESERVE, -1, 0);
                if (p == LibC.MapFailed)
                    throw new GuestMemoryException($"Cannot reserve {_regions[i].Size >> 20} MiB of guest RAM: {LibC.StrError(LibC.LastErrno)}");
                _hosts[i] = p;
                if (!includeInCoreDump) LibC.Madvise(p, size, LibC.MADV_DONTDUMP);
                Size += _regions[i].Size;
            }
        }
        catch { Dispose(); throw; }
    }

    public bool TryGetSpan(GuestAddress address, int length, out Span<byte> span)
    {
        if (length >= 0)
        {
            for (int i = 0; i < _regions.Length; i++)
            {
                if (_regions[i].Contains(address.Value, (ulong)length))
                {
                    span = new Span<byte>((byte*)_hosts[i] + (address.Value - _regions[i].Start.Value), length);
                    return true;
                }
            }
        }
        span = default;
        return false;
    }

    public bool TryRead(GuestAddress address, Span<byte> destination)
    {
        if (!TryGetSpan(address, destination.Length, out var source)) return false;
        source.CopyTo(destination);
        return true;
    }

    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source)
    {
        if (!TryGetSpan(address, source.Length, out var destination)) return false;
        source.CopyTo(destination);
        return true;
    }

    public void Dispose()
    {
        for (int i = 0; i < _hosts.Length; i++)
        {
            if (_hosts[i] != 0) LibC.Munmap(_hosts[i], (nuint)_regions[i].Size);
            _hosts[i] = 0;
        }
    }
}
