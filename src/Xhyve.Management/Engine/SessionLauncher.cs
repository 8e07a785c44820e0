using System.Runtime.InteropServices;
using System.IO.Pipes;
using Microsoft.Win32.SafeHandles;

namespace Xhyve.Management.Engine;

/// <summary>
/// Runs a program to its end with posix_spawnp, as Process.Start would with only standard error redirected: standard
/// input and output inherited, standard error a pipe whose read end is returned, this process's environment (.NET's
/// view of it, which is what `$env:` changes), no shell, the signal mask emptied and every signal at its default in the
/// child. Used for `setsid --fork`, which exits at once: Process's machinery (its child tracking, a SIGCHLD handler and
/// a reaping thread) cost the start 2.5 ms of CPU for that.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static unsafe partial class SessionLauncher
{
    private const int O_CLOEXEC = 0x80000, EINTR = 4, ECHILD = 10;
    private const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08;
    // glibc's opaque types, with room to spare (posix_spawnattr_t is 336 bytes, posix_spawn_file_actions_t 80, sigset_t 128).
    private const int OpaqueSize = 512;

    /// <summary>The program's exit status (128 + the signal for one killed by a signal; 0 when it was reaped by someone
    /// else, see below) and its standard error, read from a pipe that whatever it started may go on holding. Throws
    /// <see cref="EngineException"/> when it cannot be run.</summary>
    public static (int Status, Stream StandardError) Run(string program, IReadOnlyList<string> args)
    {
        string path = Resolve(program);
        int* pipe = stackalloc int[2];
        if (Pipe2(pipe, O_CLOEXEC) != 0) throw new EngineException($"{program}: cannot make a pipe: {Marshal.GetLastPInvokeErrorMessage()}");
        // A pipe stream: its reads wait in the runtime's epoll loop, not on a blocked thread-pool thread, however long
        // the engine keeps the write end (until it redirects into its log) or whatever it starts inherits it.
        var readEnd = new SafePipeHandle((nint)pipe[0], ownsHandle: true);
        int pid;
        try
        {
            pid = Spawn(path, args, pipe[1]);
        }
        catch
        {
            readEnd.Dispose();
            throw;
        }
        finally { Close(pipe[1]); }   // the child has its own copy (as fd 2); ours would keep the pipe open for ever
        int status, code;
        while (true)
        {
            if (WaitPid(pid, &status, 0) >= 0) { code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f); break; }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            // A host that started this process with SIGCHLD ignored has .NET reap every child itself: the status is gone,
            // not the launch; what the engine does next (its socket, pid file or exit file) decides.
            if (errno == ECHILD) { code = 0; break; }
            readEnd.Dispose();
            throw new EngineException($"{program}: waitpid: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        return (code, new AnonymousPipeClientStream(PipeDirection.In, readEnd));
    }

    /// <summary>The program's path through the PATH of .NET's environment, as Process.Start finds it; posix_spawnp would
    /// search the PATH the process started with.</summary>
    private static string Resolve(string program) =>
        program.Contains('/') ? program
        // Not found: posix_spawnp's own search, and its error, name it.
        : ProgramSearch.OnPath(program, c => File.Exists(c) && ProgramSearch.IsExecutable(c)) ?? program;

    private static int Spawn(string program, IReadOnlyList<string> args, int stderr)
    {
        var environment = Environment.GetEnvironmentVariables();
        var strings = new List<nint>(args.Count + environment.Count + 1);
        byte* actions = stackalloc byte[OpaqueSize], attributes = stackalloc byte[OpaqueSize];
        byte* noSignals = stackalloc byte[OpaqueSize], allSignals = stackalloc byte[OpaqueSize];
        try
        {
            nint[] argv = new nint[args.Count + 2], envp = new nint[environment.Count + 1];
            argv[0] = Add(strings, program);
            for (int i = 0; i < args.Count; i++) argv[i + 1] = Add(strings, args[i]);
            int e = 0;
            foreach (System.Collections.DictionaryEntry variable in environment) envp[e++] = Add(strings, $"{variable.Key}={variable.Value}");
            Check(program, FileActionsInit(actions));
            try
            {
                Check(program, AddDup2(actions, stderr, 2));   // dup2 clears O_CLOEXEC on fd 2
                Check(program, AttrInit(attributes));
                try
                {
                    SigEmptySet(noSignals);
                    SigFillSet(allSignals);
                    Check(program, SetSigMask(attributes, noSignals));
                    Check(program, SetSigDefault(attributes, allSignals));
                    Check(program, SetFlags(attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF));
                    int pid;
                    fixed (nint* a = argv, v = envp)
                        Check(program, SpawnP(&pid, program, actions, attributes, a, v));
                    return pid;
                }
                finally { AttrDestroy(attributes); }
            }
            finally { FileActionsDestroy(actions); }
        }
        finally
        {
            foreach (var s in strings) Marshal.FreeCoTaskMem(s);
        }
    }

    private static nint Add(List<nint> strings, string value)
    {
        nint s = Marshal.StringToCoTaskMemUTF8(value);
        strings.Add(s);
        return s;
    }

    /// <summary>The posix_spawn functions return the error number rather than setting errno.</summary>
    private static void Check(string program, int error)
    {
        if (error != 0) throw new EngineException($"{program} could not be started: {Marshal.GetPInvokeErrorMessage(error)}");
    }

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport("libc", EntryPoint = "posix_spawnp", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SpawnP(int* pid, string file, byte* fileActions, byte* attributes, nint* argv, nint* envp);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    private static partial int FileActionsInit(byte* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    private static partial int FileActionsDestroy(byte* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static partial int AddDup2(byte* actions, int fd, int newFd);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_init")]
    private static partial int AttrInit(byte* attributes);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_destroy")]
    private static partial int AttrDestroy(byte* attributes);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setflags")]
    private static partial int SetFlags(byte* attributes, short flags);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigmask")]
    private static partial int SetSigMask(byte* attributes, byte* mask);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigdefault")]
    private static partial int SetSigDefault(byte* attributes, byte* signals);

    [LibraryImport("libc", EntryPoint = "sigemptyset")]
    private static partial int SigEmptySet(byte* set);

    [LibraryImport("libc", EntryPoint = "sigfillset")]
    private static partial int SigFillSet(byte* set);
}
