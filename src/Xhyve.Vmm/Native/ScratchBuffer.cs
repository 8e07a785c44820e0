namespace Xhyve.Vmm.Native;

/// <summary>
/// A short-lived buffer in its own anonymous mapping, for the boot loaders' decompression blocks and the bytes after
/// a kernel image. Unlike a managed array (kept in the GC heap) or malloc (whose freed blocks glibc may keep), its
/// pages go back to the system the moment it is disposed, so a VM's resident memory after boot does not include it.
/// </summary>
internal sealed unsafe class ScratchBuffer : IDisposable
{
    private nint _address;

    /// <summary>Capacity in bytes: whole pages, at least the size asked for.</summary>
    public int Capacity { get; private set; }

    public ScratchBuffer(int bytes)
    {
        _address = Map(bytes, out int capacity);
        Capacity = capacity;
    }

    public Span<byte> Span => new((void*)_address, Capacity);

    /// <summary>The buffer's address, for native decoders (it never moves until <see cref="Grow"/>).</summary>
    public byte* Pointer => (byte*)_address;

    /// <summary>Grows to at least <paramref name="bytes"/>, keeping the first <paramref name="keep"/> bytes.</summary>
    public void Grow(int bytes, int keep)
    {
        if (bytes <= Capacity) return;
        nint bigger = Map(Math.Max(bytes, Capacity >= int.MaxValue / 2 ? int.MaxValue : Capacity * 2), out int capacity);
        new ReadOnlySpan<byte>((void*)_address, keep).CopyTo(new Span<byte>((void*)bigger, capacity));
        LibC.Munmap(_address, (nuint)Capacity);
        (_address, Capacity) = (bigger, capacity);
    }

    private static nint Map(int bytes, out int capacity)
    {
        capacity = (int)Math.Min(((long)Math.Max(bytes, 1) + 4095) & ~4095L, int.MaxValue & ~4095);
        nint p = LibC.Mmap(0, (nuint)capacity, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_PRIVATE | LibC.MAP_ANONYMOUS, -1, 0);
        if (p == LibC.MapFailed) throw new OutOfMemoryException($"cannot map {capacity} bytes of scratch memory: {LibC.StrError(LibC.LastErrno)}");
        return p;
    }

    public void Dispose()
    {
        nint p = Interlocked.Exchange(ref _address, 0);
        if (p != 0) LibC.Munmap(p, (nuint)Capacity);
    }
}
