using System.Text;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Devices.Virtio.Net;

/// <summary>
/// A host TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): an existing TAP the user may open, or a
/// new one when the engine has CAP_NET_ADMIN (it goes away with the engine). Every packet carries a 12-byte
/// virtio_net_hdr, so checksum and segmentation offloads pass between guest and host kernel untouched. The kernel
/// moves one frame per read or write; the device batches the interrupts and notifications around them.
/// </summary>
public sealed unsafe class TapBackend : INetBackend
{
    public const string TunDevice = "/dev/net/tun";
    private readonly string _name;
    private readonly string _tap;
    private int _fd;
    // One frame at most: a 64 KiB TSO frame with its header.
    private readonly byte[] _rx = new byte[NetHeader.Size + EthernetFrame.MaximumSize];
    private int _rxLength;
    private string? _closeReason;

    private TapBackend(string name, string tap, int fd) { _name = name; _tap = tap; _fd = fd; }

    public string Description => $"TAP {_tap}";
    public int Fd => _fd;
    public int VnetHeaderSize => NetHeader.Size;
    public ulong Offloads => NetFeatures.TapOffloads;
    public bool HasQueuedOutput => false;
    public string? CloseReason => _closeReason;

    /// <summary>Opens TAP <paramref name="tap"/> for adapter <paramref name="name"/>.</summary>
    /// <exception cref="NetBackendException">No /dev/net/tun, no permission, a busy TAP, or a name that is not a TAP.</exception>
    public static TapBackend Open(string name, string tap)
    {
        int fd = LibC.Open(TunDevice, LibC.O_RDWR | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            int e = LibC.LastErrno;
            throw new NetBackendException($"{name}: tap={tap}: cannot open {TunDevice}: {LibC.StrError(e)}");
        }
        try
        {
            var req = new IfReq { Flags = (short)(LibC.IFF_TAP | LibC.IFF_NO_PI | LibC.IFF_VNET_HDR) };
            int n = Encoding.UTF8.GetBytes(tap, new Span<byte>(req.Name, IfReq.NameSize - 1));
            req.Name[n] = 0;
            if (LibC.Ioctl(fd, LibC.TUNSETIFF, &req) != 0)
            {
                int e = LibC.LastErrno;
                string why = e switch
                {
                    LibC.EPERM => "not permitted (the TAP must exist and belong to this user, or the engine needs CAP_NET_ADMIN to create it)",
                    LibC.EBUSY => "in use by another process",
                    LibC.EINVAL => "exists but is not a TAP device with these flags",
                    _ => LibC.StrError(e),
                };
                throw new NetBackendException($"{name}: tap={tap}: {why}");
            }
            int size = NetHeader.Size;
            if (LibC.Ioctl(fd, LibC.TUNSETVNETHDRSZ, &size) != 0)
                throw new NetBackendException($"{name}: tap={tap}: setting the virtio-net header size failed: {LibC.StrError(LibC.LastErrno)}");
            uint none = 0;
            LibC.Ioctl(fd, LibC.TUNSETOFFLOAD, (nint)none);
            return new TapBackend(name, tap, fd);
        }
        catch { LibC.Close(fd); throw; }
    }

    public void SetOffloads(ulong negotiated)
    {
        if (_fd < 0) return;
        // What the guest can receive: partial checksums and large segments, as it negotiated them.
        uint flags = 0;
        if ((negotiated & NetFeatures.GuestCsum) != 0)
        {
            flags |= LibC.TUN_F_CSUM;
            if ((negotiated & NetFeatures.GuestTso4) != 0) flags |= LibC.TUN_F_TSO4;
            if ((negotiated & NetFeatures.GuestTso6) != 0) flags |= LibC.TUN_F_TSO6;
            if ((negotiated & NetFeatures.GuestEcn) != 0 && (flags & (LibC.TUN_F_TSO4 | LibC.TUN_F_TSO6)) != 0) flags |= LibC.TUN_F_TSO_ECN;
        }
        if (LibC.Ioctl(_fd, LibC.TUNSETOFFLOAD, (nint)flags) != 0)
            Console.Error.WriteLine($"xhyve: {_name}: TAP {_tap}: TUNSETOFFLOAD 0x{flags:x} failed: {LibC.StrError(LibC.LastErrno)}");
    }

    public NetIo Peek(out ReadOnlySpan<byte> packet)
    {
        packet = default;
        if (_fd < 0) return NetIo.Closed;
        while (_rxLength == 0)
        {
            nint n;
            fixed (byte* p = _rx) n = LibC.Read(_fd, p, (nuint)_rx.Length);
            if (n > NetHeader.Size) { _rxLength = (int)n; break; }
            if (n >= 0) continue;   // a packet too short to hold a frame: skip it
            int errno = LibC.LastErrno;
            if (errno == LibC.EINTR) continue;
            if (errno == LibC.EAGAIN) return NetIo.WouldBlock;
            return Close($"reading TAP {_tap} failed: {LibC.StrError(errno)}");
        }
        packet = _rx.AsSpan(0, _rxLength);
        return NetIo.Ok;
    }

    public void Consume() => _rxLength = 0;

    public NetIo Send(ReadOnlySpan<byte> packet)
    {
        while (true)
        {
            if (_fd < 0) return NetIo.Closed;
            nint n;
            fixed (byte* p = packet) n = LibC.Write(_fd, p, (nuint)packet.Length);
            if (n >= 0) return NetIo.Ok;
            int errno = LibC.LastErrno;
            if (errno == LibC.EINTR) continue;
            if (errno == LibC.EAGAIN) return NetIo.WouldBlock;
            // The kernel refuses a frame it finds malformed (EINVAL) or cannot route (EIO when the link is down):
            // that frame is lost, the TAP is not.
            if (errno is LibC.EINVAL or LibC.EIO or LibC.ENOBUFS) return NetIo.Dropped;
            return Close($"writing TAP {_tap} failed: {LibC.StrError(errno)}");
        }
    }

    public NetIo Flush() => _fd < 0 ? NetIo.Closed : NetIo.Ok;

    private NetIo Close(string reason)
    {
        _closeReason = reason;
        Dispose();
        return NetIo.Closed;
    }

    public void Dispose()
    {
        if (_fd >= 0) LibC.Close(_fd);
        _fd = -1;
    }
}
