using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Native;

/// <summary>The few libc calls the VMM needs. All signatures are blittable.</summary>
internal static partial class LibC
{
    private const string Lib = "libc";

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_NOCTTY = 0x100, O_CLOEXEC = 0x80000, O_NONBLOCK = 0x800,
        O_DIRECTORY = 0x10000;   // x86-64 (arm64 uses 0x4000; the KVM backend is x86-64 only)
    public const int PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
    public const int MADV_DONTDUMP = 16, MADV_MERGEABLE = 12;
    public const int EINTR = 4, EAGAIN = 11, EBADF = 9, EINVAL = 22;
    public static readonly nint MapFailed = -1;

    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    [LibraryImport(Lib, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    public const int O_CREAT = 0x40, O_EXCL = 0x80, O_APPEND = 0x400;

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Lib, EntryPoint = "dup2", SetLastError = true)]
    public static partial int Dup2(int fd, int target);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, nint arg);

    [LibraryImport(Lib, EntryPoint = "ioctl", SetLastError = true)]
    public static unsafe partial int Ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    [LibraryImport(Lib, EntryPoint = "gettid")]
    public static partial int GetTid();

    [LibraryImport(Lib, EntryPoint = "getpid")]
    public static partial int GetPid();

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, long a, long b, long c);

    private const long SysTgkill = 234;

    /// <summary>Sends <paramref name="signal"/> to one thread of this process.</summary>
    public static int TgKill(int pid, int tid, int signal) => (int)Syscall3(SysTgkill, pid, tid, signal);

    [LibraryImport(Lib, EntryPoint = "strerror")]
    private static partial nint StrErrorNative(int errnum);

    public static string StrError(int errno) => Marshal.PtrToStringUTF8(StrErrorNative(errno)) ?? $"errno {errno}";

    [LibraryImport(Lib, EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    public static unsafe partial int Poll(PollFd* fds, nuint nfds, int timeoutMs);

    [LibraryImport(Lib, EntryPoint = "pipe2", SetLastError = true)]
    public static unsafe partial int Pipe2(int* fds, int flags);

    [LibraryImport(Lib, EntryPoint = "isatty")]
    public static partial int IsATty(int fd);

    [LibraryImport(Lib, EntryPoint = "tcgetattr", SetLastError = true)]
    public static partial int TcGetAttr(int fd, out Termios termios);

    [LibraryImport(Lib, EntryPoint = "tcsetattr", SetLastError = true)]
    public static partial int TcSetAttr(int fd, int optionalActions, in Termios termios);

    [LibraryImport(Lib, EntryPoint = "cfmakeraw")]
    public static partial void CfMakeRaw(ref Termios termios);

    public const int TCSANOW = 0;
    public const uint OPOST = 1;   // c_oflag: output post-processing (\n to \r\n on a terminal)

    [LibraryImport(Lib, EntryPoint = "posix_openpt", SetLastError = true)]
    public static partial int PosixOpenPt(int flags);

    [LibraryImport(Lib, EntryPoint = "grantpt", SetLastError = true)]
    public static partial int GrantPt(int fd);

    [LibraryImport(Lib, EntryPoint = "unlockpt", SetLastError = true)]
    public static partial int UnlockPt(int fd);

    [LibraryImport(Lib, EntryPoint = "ptsname_r", SetLastError = true)]
    public static unsafe partial int PtsNameR(int fd, byte* buffer, nuint length);

    [LibraryImport(Lib, EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int FdataSync(nint fd);

    public static int LastErrno => Marshal.GetLastPInvokeError();

    // Block I/O: vectored positional reads and writes straight into guest memory, no managed copies.
    public const int O_DSYNC = 0x1000, O_DIRECT = 0x4000;
    public const int ENOENT = 2, EISDIR = 21, EWOULDBLOCK = 11, EACCES = 13, EROFS = 30, EPERM = 1;

    [LibraryImport(Lib, EntryPoint = "preadv", SetLastError = true)]
    public static unsafe partial nint PReadV(int fd, Storage.IoBuffer* iov, int count, long offset);

    [LibraryImport(Lib, EntryPoint = "pwritev", SetLastError = true)]
    public static unsafe partial nint PWriteV(int fd, Storage.IoBuffer* iov, int count, long offset);

    public const int IovMax = 1024;

    [LibraryImport(Lib, EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);
    public const int SEEK_END = 2;

    [LibraryImport(Lib, EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);
    public const int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;

    [LibraryImport(Lib, EntryPoint = "ftruncate", SetLastError = true)]
    public static partial int FTruncate(int fd, long length);

    [LibraryImport(Lib, EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(int fd, int mode, long offset, long length);
    public const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;

    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    public static unsafe partial int FStat(int fd, Stat* buffer);
    public const uint S_IFMT = 0xF000, S_IFBLK = 0x6000, S_IFREG = 0x8000;

    // Files the engine writes next to the user's data (docs/security.md): checked with lstat, opened with
    // O_NOFOLLOW, replaced by rename, removed only while they are still the inode the engine made.
    public const uint S_IFCHR = 0x2000, S_IFDIR = 0x4000, S_IFIFO = 0x1000, S_IFLNK = 0xA000, S_IFSOCK = 0xC000;
    public const int O_NOFOLLOW = 0x20000;
    public const int ENXIO = 6, EEXIST = 17, ELOOP = 40;

    [LibraryImport(Lib, EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int LStat(string path, Stat* buffer);

    [LibraryImport(Lib, EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int StatPath(string path, Stat* buffer);

    [LibraryImport(Lib, EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Rename(string from, string to);

    [LibraryImport(Lib, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Unlink(string path);

    /// <summary>link(2): fails with EEXIST when anything (a symlink included) has the new name; never follows it.</summary>
    [LibraryImport(Lib, EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Link(string existing, string newPath);

    [LibraryImport(Lib, EntryPoint = "fsync", SetLastError = true)]
    public static partial int FSync(int fd);

    [LibraryImport(Lib, EntryPoint = "geteuid")]
    public static partial uint GetEUid();

    [LibraryImport(Lib, EntryPoint = "getrandom", SetLastError = true)]
    public static unsafe partial nint GetRandom(byte* buffer, nuint length, uint flags);

    // eventfd: the doorbell between a vCPU (or KVM itself, through ioeventfd) and a device worker.
    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);
    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;
}

/// <summary>struct stat on x86_64 (144 bytes); only st_dev, st_ino, st_mode, st_uid, st_size and st_blocks are read.</summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct Stat
{
    [FieldOffset(0)] public ulong Dev;
    [FieldOffset(8)] public ulong Ino;
    [FieldOffset(24)] public uint Mode;
    [FieldOffset(28)] public uint Uid;
    [FieldOffset(40)] public ulong RDev;
    [FieldOffset(48)] public long Size;
    [FieldOffset(64)] public long Blocks;
}

[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short Revents;
    public const short PollIn = 1, PollOut = 4, PollErr = 8, PollHup = 0x10, PollNval = 0x20;
}

/// <summary>glibc's struct termios on Linux (60 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Termios
{
    public uint IFlag, OFlag, CFlag, LFlag;
    public byte Line;
    public fixed byte Cc[32];
    public uint ISpeed, OSpeed;
}
