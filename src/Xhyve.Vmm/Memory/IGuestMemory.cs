namespace Xhyve.Vmm.Memory;

/// <summary>
/// Guest RAM as devices and loaders see it. Every access is bounds-checked and all-or-nothing:
/// a range not wholly inside one RAM region is refused.
/// </summary>
public interface IGuestMemory
{
    /// <summary>Total RAM bytes.</summary>
    ulong Size { get; }

    /// <summary>The RAM regions, lowest first.</summary>
    IReadOnlyList<MemoryRegion> Regions { get; }

    /// <summary>A view of <paramref name="length"/> bytes at <paramref name="address"/>, if wholly inside one region.</summary>
    bool TryGetSpan(GuestAddress address, int length, out Span<byte> span);

    bool TryRead(GuestAddress address, Span<byte> destination);

    bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source);
}

/// <summary>One contiguous range of guest RAM.</summary>
public readonly record struct MemoryRegion(GuestAddress Start, ulong Size)
{
    public ulong End => Start.Value + Size;
    public bool Contains(ulong address, ulong length) =>
        address >= Start.Value && length <= Size && address - Start.Value <= Size - length;
}

public static class GuestMemoryExtensions
{
    /// <summary>Writes VMM-built data (boot structures); a failure is a layout bug or a too-small RAM, never guest input.</summary>
    public static void WriteExactly(this IGuestMemory memory, GuestAddress address, ReadOnlySpan<byte> source)
    {
        if (!memory.TryWrite(address, source))
            throw new GuestMemoryException($"Cannot write {source.Length} bytes at guest address {address}: outside guest RAM");
    }

    public static void ReadExactly(this IGuestMemory memory, GuestAddress address, Span<byte> destination)
    {
        if (!memory.TryRead(address, destination))
            throw new GuestMemoryException($"Cannot read {destination.Length} bytes at guest address {address}: outside guest RAM");
    }
}

public sealed class GuestMemoryException(string message) : Exception(message);
