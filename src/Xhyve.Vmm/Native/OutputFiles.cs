using System.Text;

namespace Xhyve.Vmm.Native;

/// <summary>Which inode the engine created at a path, so it removes that file at exit and nothing that replaced it.</summary>
public readonly record struct FileIdentity(ulong Device, ulong Inode);

/// <summary>
/// The files the engine writes where its user points it (--exit-file, -F, autopty=PATH, log=PATH, the
/// control socket). The engine often runs as root, so a path is never trusted to be what its name says:
/// symlinks are never followed, only a regular file owned by this user is ever replaced, parent folders
/// are never created, and what the engine created is removed only while it is still the same inode.
/// Every refusal is an <see cref="IOException"/> whose message is one line starting with "WHAT PATH: ".
/// See docs/security.md.
/// </summary>
public static unsafe class OutputFiles
{
    private const int FileMode = 0b110_100_100;   // 0644, as the engine wrote these files before

    /// <summary>What is at <paramref name="path"/> itself (a symlink is not followed), or null when nothing is.</summary>
    internal static Stat? LStat(string path)
    {
        Stat st;
        return LibC.LStat(path, &st) == 0 ? st : null;
    }

    internal static string Describe(uint mode) => (mode & LibC.S_IFMT) switch
    {
        LibC.S_IFREG => "a regular file",
        LibC.S_IFLNK => "a symbolic link",
        LibC.S_IFCHR => "a character device",
        LibC.S_IFBLK => "a block device",
        LibC.S_IFDIR => "a folder",
        LibC.S_IFIFO => "a FIFO",
        LibC.S_IFSOCK => "a socket",
        _ => "not a regular file",
    };

    /// <summary>"--exit-file /x" or, for a backend option, "com1 log=/x": the input as the user wrote it.</summary>
    private static string Name(string what, string path) => what.EndsWith('=') ? what + path : $"{what} {path}";

    private static bool Is(in Stat st, uint type) => (st.Mode & LibC.S_IFMT) == type;

    /// <summary>Throws unless the folder holding <paramref name="path"/> exists: the engine never creates folders
    /// for its output, so a typo cannot scatter folders (as root) across the file system.</summary>
    public static void CheckFolder(string path, string what)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Stat st;
        if (LibC.StatPath(folder, &st) != 0)
            throw new IOException($"{Name(what, path)}: the folder {folder} does not exist (the engine does not create it)");
        if (!Is(st, LibC.S_IFDIR)) throw new IOException($"{Name(what, path)}: {folder} is not a folder");
    }

    /// <summary>The uid that owns what <paramref name="path"/> names (symlinks followed), or null when nothing is there.</summary>
    public static uint? OwnerOf(string path)
    {
        Stat st;
        return LibC.StatPath(path, &st) == 0 ? st.Uid : null;
    }

    /// <summary>Whether both paths name one file (symlinks and hard links followed); false when either is absent.</summary>
    public static bool SameFile(string a, string b)
    {
        Stat sa, sb;
        return LibC.StatPath(a, &sa) == 0 && LibC.StatPath(b, &sb) == 0 && sa.Dev == sb.Dev && sa.Ino == sb.Ino;
    }

    /// <summary>This process's effective uid: the user whose files the engine may replace.</summary>
    public static uint EffectiveUserId => LibC.GetEUid();

    /// <summary>Throws unless <paramref name="path"/> may be replaced: its folder exists and it is absent or a
    /// regular file owned by this user. Called before the engine starts, so bad input changes nothing.</summary>
    public static void CheckReplaceable(string path, string what)
    {
        CheckFolder(path, what);
        if (LStat(path) is not { } st) return;
        if (!Is(st, LibC.S_IFREG))
            throw new IOException($"{Name(what, path)}: is {Describe(st.Mode)}; the engine only replaces a regular file");
        uint me = LibC.GetEUid();
        if (st.Uid != me) throw new IOException($"{Name(what, path)}: belongs to uid {st.Uid}, not to this user (uid {me}); the engine only replaces its own files");
    }

    /// <summary>A hidden, unique name in <paramref name="path"/>'s folder for the new content that will be renamed over
    /// it (".NAME.PID.RANDOM.tmp"): the same folder, so the rename is one step on one file system.</summary>
    public static string TemporaryNameBeside(string path) =>
        Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Random.Shared.Next():x8}.tmp");

    /// <summary>Creates a new, uniquely named temporary file in <paramref name="full"/>'s folder (O_EXCL|O_NOFOLLOW, so
    /// nothing already there is opened); returns its descriptor, or -1 with errno set.</summary>
    private static int CreateBeside(string full, int access, out string temporary)
    {
        temporary = TemporaryNameBeside(full);
        return LibC.Open(temporary, access | LibC.O_CREAT | LibC.O_EXCL | LibC.O_NOFOLLOW | LibC.O_CLOEXEC, FileMode);
    }

    /// <summary>Replaces <paramref name="path"/> with <paramref name="content"/> whole: written to a new file created
    /// with O_EXCL|O_NOFOLLOW in the same folder, synced, renamed over the target (which rename never follows), and
    /// the folder synced, so the new name survives a power cut once this returns.</summary>
    public static FileIdentity WriteReplacing(string path, ReadOnlySpan<byte> content, string what)
    {
        CheckReplaceable(path, what);
        string full = Path.GetFullPath(path);
        int fd = CreateBeside(full, LibC.O_WRONLY, out string temporary);
        if (fd < 0) throw new IOException($"{Name(what, path)}: cannot create {temporary}: {LibC.StrError(LibC.LastErrno)}");
        try
        {
            WriteAll(fd, content, what, path);
            if (LibC.FSync(fd) != 0) throw new IOException($"{Name(what, path)}: fsync: {LibC.StrError(LibC.LastErrno)}");
            var id = IdentityOf(fd);
            LibC.Close(fd);
            fd = -1;
            // Checked again just before the rename: the target may have changed since the first look.
            CheckReplaceable(path, what);
            if (LibC.Rename(temporary, full) != 0) throw new IOException($"{Name(what, path)}: rename: {LibC.StrError(LibC.LastErrno)}");
            SyncFolder(full, what);
            return id;
        }
        catch
        {
            if (fd >= 0) LibC.Close(fd);
            LibC.Unlink(temporary);
            throw;
        }
    }

    /// <summary>fsyncs the folder holding <paramref name="path"/>: a rename is a change to the folder, and until the
    /// folder is synced a power cut may bring back the old name (fsync(2): syncing a file does not sync its entry).</summary>
    public static void SyncFolder(string path, string what)
    {
        if (SyncFolderOf(path, out string folder, out bool opened) is var errno and not 0)
            throw new IOException(opened ? $"{Name(what, path)}: fsync of the folder {folder}: {LibC.StrError(errno)}"
                : $"{Name(what, path)}: cannot open the folder {folder} to sync it: {LibC.StrError(errno)}");
    }

    /// <summary>fsyncs the folder holding <paramref name="path"/>; 0, or the errno of the open (<paramref name="opened"/>
    /// false) or of the fsync. A file system that cannot sync a folder (EINVAL: some FUSE and network file systems)
    /// has nothing to do there: 0.</summary>
    public static int SyncFolderOf(string path, out string folder, out bool opened)
    {
        folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        int fd = LibC.Open(folder, LibC.O_RDONLY | LibC.O_CLOEXEC | LibC.O_DIRECTORY);
        opened = fd >= 0;
        if (fd < 0) return LibC.LastErrno;
        int synced = LibC.FSync(fd), errno = LibC.LastErrno;
        LibC.Close(fd);
        return synced == 0 || errno == LibC.EINVAL ? 0 : errno;
    }

    /// <summary>
    /// -F: publishes a pid file that this process holds a (shared) flock on for as long as it runs (the returned
    /// descriptor), so "is the engine that wrote this file still running?" has an exact answer: the lock is held.
    /// The file is written and locked under a temporary name first and then linked into place, so it is never
    /// seen unlocked or empty. A pid file already at the path is replaced only when it is stale: a regular file
    /// of this user that holds nothing but a process id and that no engine holds locked (its engine was killed,
    /// whether its pid is dead or now belongs to another process). Anything else is refused.
    /// </summary>
    public static (FileIdentity Identity, int LockFd) CreatePidFile(string path, string what)
    {
        CheckFolder(path, what);
        string full = Path.GetFullPath(path);
        int fd = CreateBeside(full, LibC.O_RDWR, out string temporary);
        if (fd < 0) throw new IOException($"{Name(what, path)}: cannot create: {LibC.StrError(LibC.LastErrno)}");
        try
        {
            WriteAll(fd, Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"), what, path);
            // Shared, not exclusive: .NET readers (File.ReadAllText, the management library) take LOCK_SH and must
            // still read the file; what matters is that a starting engine's LOCK_EX fails while we hold it.
            if (LibC.Flock(fd, LibC.LOCK_SH | LibC.LOCK_NB) != 0) throw new IOException($"{Name(what, path)}: flock: {LibC.StrError(LibC.LastErrno)}");
            // A few rounds: another engine may be replacing the same stale file at the same moment.
            for (int attempt = 0; attempt < 5; attempt++)
            {
                if (LibC.Link(temporary, full) == 0) { LibC.Unlink(temporary); return (IdentityOf(fd), fd); }
                if (LibC.LastErrno != LibC.EEXIST) throw new IOException($"{Name(what, path)}: cannot create: {LibC.StrError(LibC.LastErrno)}");
                if (LockStalePidFile(full, path, what) is not int stale) continue;   // it changed under us: look again
                // Holding the stale file's lock means no one else is replacing it; rename never follows a symlink.
                int renamed = LibC.Rename(temporary, full), errno = LibC.LastErrno;
                LibC.Close(stale);
                if (renamed != 0) throw new IOException($"{Name(what, path)}: rename: {LibC.StrError(errno)}");
                return (IdentityOf(fd), fd);
            }
            throw new IOException($"{Name(what, path)}: the pid file kept changing while the engine started; try again");
        }
        catch
        {
            LibC.Close(fd);
            LibC.Unlink(temporary);
            throw;
        }
    }

    /// <summary>Removes the pid file while it is still ours, then releases its lock: in this order, so no one can find
    /// our file unlocked and take it for stale.</summary>
    public static void RemovePidFile(string path, FileIdentity identity, int lockFd)
    {
        RemoveIfSame(path, identity);
        LibC.Close(lockFd);
    }

    /// <summary>The descriptor of the stale pid file at <paramref name="full"/>, locked, or null when it vanished or
    /// was replaced meanwhile. Throws when the file may not be replaced.</summary>
    private static int? LockStalePidFile(string full, string path, string what)
    {
        if (LStat(full) is not { } st) return null;
        if (!Is(st, LibC.S_IFREG))
            throw new IOException($"{Name(what, path)}: is {Describe(st.Mode)}; the engine only replaces a pid file left by an engine that is gone");
        uint me = LibC.GetEUid();
        if (st.Uid != me) throw new IOException($"{Name(what, path)}: belongs to uid {st.Uid}, not to this user (uid {me}); the engine only replaces its own files");
        // O_NONBLOCK: nothing here may hang the start, even if the file was swapped for a FIFO since the lstat.
        int fd = LibC.Open(full, LibC.O_RDONLY | LibC.O_NOFOLLOW | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = LibC.LastErrno;
            if (errno is LibC.ENOENT or LibC.ELOOP) return null;
            throw new IOException($"{Name(what, path)}: cannot open the existing pid file: {LibC.StrError(errno)}");
        }
        bool keep = false;
        try
        {
            Stat now;
            if (LibC.FStat(fd, &now) != 0 || !Is(now, LibC.S_IFREG) || now.Dev != st.Dev || now.Ino != st.Ino) return null;
            var buffer = stackalloc byte[32];
            nint n = LibC.Read(fd, buffer, 32);
            string text = n < 0 ? "" : Encoding.ASCII.GetString(buffer, (int)n).TrimEnd('\n');
            // Only what an engine writes: a file with other content is the user's, whatever its name (-F notes.txt).
            if (n < 0 || n == 32 || !text.All(char.IsAsciiDigit))
                throw new IOException($"{Name(what, path)}: exists and does not hold a process id; the engine only replaces a pid file left by an engine that is gone");
            if (LibC.Flock(fd, LibC.LOCK_EX | LibC.LOCK_NB) != 0)
            {
                int errno = LibC.LastErrno;
                throw new IOException(errno == LibC.EWOULDBLOCK
                    ? $"{Name(what, path)}: an engine{(text.Length > 0 ? $" (pid {text})" : "")} is running with this pid file"
                    : $"{Name(what, path)}: flock: {LibC.StrError(errno)}");
            }
            // Locked exclusively: no engine holds it, so the one that wrote it is gone (a reader that holds a shared
            // lock for a moment makes it look alive: refused, and the next start succeeds). Still the file at the path?
            if (IdentityOf(full) != new FileIdentity(now.Dev, now.Ino)) return null;
            keep = true;
            return fd;
        }
        finally { if (!keep) LibC.Close(fd); }
    }

    /// <summary>Opens <paramref name="path"/> for appending (log=PATH). Accepted: a regular file owned by this user
    /// (created 0644 when absent), the null device, or a terminal. Refused: a symlink, another user's file, and
    /// every other kind of file (a block device or /dev/mem-like character device would be overwritten, a FIFO
    /// could block the engine). Returns the descriptor (O_NONBLOCK, so a slow terminal never stalls a vCPU).</summary>
    internal static int OpenForAppend(string path, string what)
    {
        CheckFolder(path, what);
        // O_NONBLOCK: opening a FIFO without a reader fails at once instead of hanging the engine.
        int fd = LibC.Open(path, LibC.O_WRONLY | LibC.O_CREAT | LibC.O_APPEND | LibC.O_NOFOLLOW | LibC.O_NOCTTY | LibC.O_NONBLOCK | LibC.O_CLOEXEC, FileMode);
        if (fd < 0)
        {
            int errno = LibC.LastErrno;
            if (LStat(path) is { } existing && !Is(existing, LibC.S_IFREG))
                throw new IOException($"{Name(what, path)}: is {Describe(existing.Mode)}; {AppendableKinds(what)}");
            throw new IOException($"{Name(what, path)}: cannot open: {LibC.StrError(errno)}");
        }
        Stat st;
        string? problem = LibC.FStat(fd, &st) != 0 ? LibC.StrError(LibC.LastErrno)
            : Is(st, LibC.S_IFREG) ? (st.Uid == LibC.GetEUid() ? null : $"belongs to uid {st.Uid}, not to this user (uid {LibC.GetEUid()}); the engine only appends to its own files")
            : Is(st, LibC.S_IFCHR) && (IsNullDevice(st.RDev) || LibC.IsATty(fd) == 1) ? null
            : $"is {Describe(st.Mode)}{(Is(st, LibC.S_IFCHR) ? " that is neither a terminal nor /dev/null" : "")}; {AppendableKinds(what)}";
        if (problem == null) return fd;
        LibC.Close(fd);
        throw new IOException($"{Name(what, path)}: {problem}");
    }

    /// <summary>What an append target may be, naming the input ("com1 log must name ...", "--engine-log must name ...").</summary>
    private static string AppendableKinds(string what) => $"{what.TrimEnd('=')} must name a regular file, a terminal or /dev/null";

    /// <summary>--engine-log: the process's standard output and error become <paramref name="path"/>, opened for appending
    /// with the checks of <see cref="OpenForAppend"/> (no symlink followed, only this user's regular file, /dev/null or a
    /// terminal), and its standard input /dev/null, as a shell's "&lt;/dev/null &gt;&gt;PATH 2&gt;&amp;1" would do without the shell.
    /// Throws <see cref="IOException"/> naming the path; the streams are unchanged then.</summary>
    public static void RedirectStandardStreams(string path, string what)
    {
        int log = OpenForAppend(path, what);
        int input = LibC.Open("/dev/null", LibC.O_RDONLY | LibC.O_CLOEXEC);
        try
        {
            if (input < 0) throw new IOException($"{Name(what, path)}: cannot open /dev/null for standard input: {LibC.StrError(LibC.LastErrno)}");
            // dup2 clears close-on-exec on the copies: helpers the engine starts (passt) write to the same log.
            if (LibC.Dup2(input, 0) < 0 || LibC.Dup2(log, 1) < 0 || LibC.Dup2(log, 2) < 0)
                throw new IOException($"{Name(what, path)}: cannot redirect the standard streams: {LibC.StrError(LibC.LastErrno)}");
        }
        finally
        {
            LibC.Close(log);
            if (input >= 0) LibC.Close(input);
        }
    }

    /// <summary>The checks of <see cref="OpenForAppend"/> that need no open, made before the engine creates anything.</summary>
    public static void CheckAppendable(string path, string what)
    {
        CheckFolder(path, what);
        if (LStat(path) is not { } st) return;
        uint me = LibC.GetEUid();
        if (Is(st, LibC.S_IFREG) && st.Uid != me)
            throw new IOException($"{Name(what, path)}: belongs to uid {st.Uid}, not to this user (uid {me}); the engine only appends to its own files");
        if (!Is(st, LibC.S_IFREG) && !Is(st, LibC.S_IFCHR))
            throw new IOException($"{Name(what, path)}: is {Describe(st.Mode)}; {AppendableKinds(what)}");
    }

    /// <summary>The check of <see cref="OpenTerminal"/> that needs no open: the path is a character device.</summary>
    public static void CheckTerminalPath(string path, string what)
    {
        Stat st;
        if (LibC.StatPath(path, &st) != 0) throw new IOException($"{Name(what, path)}: {LibC.StrError(LibC.LastErrno)}");
        if (!Is(st, LibC.S_IFCHR)) throw new IOException($"{Name(what, path)}: is {Describe(st.Mode)}, not a terminal; {TerminalHint}");
    }

    private const string TerminalHint = "a tty backend must be a terminal; to write the console to a file use log=PATH";

    /// <summary>Opens a terminal for a tty backend (-l com1,/dev/ttyS0). Symlinks are followed (/dev/serial/by-id
    /// names are links) because only a character device that isatty() accepts is kept, and reading or writing
    /// a terminal changes no file. Anything else is refused before it is opened when it is not a character device.</summary>
    internal static int OpenTerminal(string path, string what)
    {
        CheckTerminalPath(path, what);
        int fd = LibC.Open(path, LibC.O_RDWR | LibC.O_NOCTTY | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
        if (fd < 0) throw new IOException($"{Name(what, path)}: cannot open: {LibC.StrError(LibC.LastErrno)}");
        if (LibC.IsATty(fd) == 1) return fd;
        LibC.Close(fd);
        throw new IOException($"{Name(what, path)}: is a character device that is not a terminal; {TerminalHint}");
    }

    /// <summary>Removes <paramref name="path"/> only while it is still the file the engine created there.</summary>
    public static bool RemoveIfSame(string path, FileIdentity identity)
    {
        if (LStat(path) is not { } st || st.Dev != identity.Device || st.Ino != identity.Inode) return false;
        return LibC.Unlink(path) == 0;
    }

    /// <summary>The identity of what is at <paramref name="path"/> now (not following a symlink), or null.</summary>
    public static FileIdentity? IdentityOf(string path) => LStat(path) is { } st ? new FileIdentity(st.Dev, st.Ino) : null;

    /// <summary>Whether <paramref name="path"/> is absent (false) or a socket (true); throws for anything else,
    /// so a stale-socket cleanup never deletes a file that only happens to have the name.</summary>
    public static bool IsSocketOrAbsent(string path, string what)
    {
        if (LStat(path) is not { } st) return false;
        if (Is(st, LibC.S_IFSOCK)) return true;
        throw new IOException($"{Name(what, path)}: is {Describe(st.Mode)}, not a socket; the engine only replaces a socket left by an engine that was killed");
    }

    public static FileIdentity WriteReplacing(string path, string content, string what) => WriteReplacing(path, Encoding.UTF8.GetBytes(content), what);

    private static FileIdentity IdentityOf(int fd)
    {
        Stat st;
        LibC.FStat(fd, &st);
        return new FileIdentity(st.Dev, st.Ino);
    }

    // glibc's gnu_dev_major/minor; the null device is 1:3 on Linux.
    private static bool IsNullDevice(ulong rdev) =>
        (((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffUL)) == 1 && ((rdev & 0xff) | ((rdev >> 12) & ~0xffUL)) == 3;

    private static void WriteAll(int fd, ReadOnlySpan<byte> content, string what, string path)
    {
        fixed (byte* p = content)
        {
            int done = 0;
            while (done < content.Length)
            {
                nint n = LibC.Write(fd, p + done, (nuint)(content.Length - done));
                if (n < 0 && LibC.LastErrno == LibC.EINTR) continue;
                if (n <= 0) throw new IOException($"{Name(what, path)}: write: {LibC.StrError(LibC.LastErrno)}");
                done += (int)n;
            }
        }
    }
}
