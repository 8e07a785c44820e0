using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Rom;

/// <summary>The current contents of a ROM (empty once its memory is gone).</summary>
public delegate ReadOnlySpan<byte> RomContents();

/// <summary>
/// A ROM's range on the MMIO bus, behind the hypervisor's read-only mapping of the same range: the guest's writes
/// there exit here and are dropped (a ROM ignores them; firmware probing for flash writes to it), and reads that
/// ever exit (the mapping serves them directly) get the ROM's bytes, or all-ones outside it.
/// </summary>
public sealed class RomWindow(RomContents contents) : IBusDevice
{
    private long _writes;

    /// <summary>Guest writes dropped so far.</summary>
    public long DroppedWrites => Interlocked.Read(ref _writes);

    public void Read(ulong offset, Span<byte> data)
    {
        var rom = contents();
        if (offset < (ulong)rom.Length && (ulong)data.Length <= (ulong)rom.Length - offset)
            rom.Slice((int)offset, data.Length).CopyTo(data);
        else data.Fill(0xFF);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Interlocked.Increment(ref _writes);
}
