using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Legacy;

/// <summary>Port 0x80, the POST diagnostic port: remembers the last code; reads return it.</summary>
public sealed class PostCode : IByteRegisterDevice
{
    private byte _last;
    private long _writes;
    public byte Last => Volatile.Read(ref _last);
    public long Writes => Interlocked.Read(ref _writes);

    public byte Read(byte offset) => Volatile.Read(ref _last);

    public void Write(byte offset, byte value)
    {
        Volatile.Write(ref _last, value);
        Interlocked.Increment(ref _writes);
    }
}
