using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Native;

/// <summary>The socket and TUN/TAP calls of the network backends.</summary>
internal static partial class LibC
{
    public const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
    public const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1;
    public const int EBUSY = 16, ENODEV = 19, EIO = 5, EPIPE = 32, ENOBUFS = 105, ECONNRESET = 104;

    [LibraryImport(Lib, EntryPoint = "socketpair", SetLastError = true)]
    public static unsafe partial int SocketPair(int domain, int type, int protocol, int* fds);

    public const int SOL_SOCKET = 1, SO_SNDBUF = 7, SO_RCVBUF = 8;

    [LibraryImport(Lib, EntryPoint = "setsockopt", SetLastError = true)]
    public static unsafe partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport(Lib, EntryPoint = "send", SetLastError = true)]
    public static unsafe partial nint Send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport(Lib, EntryPoint = "recv", SetLastError = true)]
    public static unsafe partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport(Lib, EntryPoint = "writev", SetLastError = true)]
    public static unsafe partial nint WriteV(int fd, Storage.IoBuffer* iov, int count);

    // <linux/if_tun.h>: _IOW('T', n, int/unsigned int).
    public const nuint TUNSETIFF = 0x400454CA, TUNSETOFFLOAD = 0x400454D0, TUNSETVNETHDRSZ = 0x400454D8, TUNSETQUEUE = 0x400454D9;
    public const nuint TUNGETFEATURES = 0x800454CF;
    public const short IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000, IFF_MULTI_QUEUE = 0x0100,
        IFF_ATTACH_QUEUE = 0x0200, IFF_DETACH_QUEUE = 0x0400;
    public const uint TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08;
}

/// <summary>struct ifreq as TUNSETIFF reads it: the interface name, then the flags in the union (40 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal unsafe struct IfReq
{
    public const int NameSize = 16;   // IFNAMSIZ, with the terminating NUL
    [FieldOffset(0)] public fixed byte Name[NameSize];
    [FieldOffset(16)] public short Flags;
}
