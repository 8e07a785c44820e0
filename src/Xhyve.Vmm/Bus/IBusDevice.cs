namespace Xhyve.Vmm.Bus;

/// <summary>
/// A device as a bus sees it: accesses at an offset within the range the device was registered at.
/// A device never knows its base address; it must not throw on any guest access.
/// </summary>
public interface IBusDevice
{
    void Read(ulong offset, Span<byte> data);
    void Write(ulong offset, ReadOnlySpan<byte> data);
}

/// <summary>A device whose registers are bytes (UART, CMOS, i8042...): the common shape of legacy devices.</summary>
public interface IByteRegisterDevice
{
    byte Read(byte offset);
    void Write(byte offset, byte value);
}

/// <summary>Adapts a byte-register device to a bus: accesses wider than a byte are counted and dropped (reads see all-ones).</summary>
public sealed class ByteRegisterBusAdapter(IByteRegisterDevice device) : IBusDevice
{
    private long _badWidth;
    public long BadWidthAccesses => Interlocked.Read(ref _badWidth);

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length != 1) { Interlocked.Increment(ref _badWidth); data.Fill(0xFF); return; }
        data[0] = device.Read((byte)offset);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length != 1) { Interlocked.Increment(ref _badWidth); return; }
        device.Write((byte)offset, data[0]);
    }
}

/// <summary>An interrupt line a device drives (level semantics: high while the device wants service).</summary>
public interface IInterruptLine
{
    void Set(bool level);
}
