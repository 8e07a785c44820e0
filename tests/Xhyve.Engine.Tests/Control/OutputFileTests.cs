using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Control;

/// <summary>
/// The files the engine writes where it is pointed (docs/security.md): --exit-file, -F, autopty=PATH, log=PATH,
/// --control-socket and tty backends. The engine often runs as root, so each test points it at something it must
/// not clobber — a symlink, a device node, a FIFO, a regular file that is not the expected kind — and checks
/// the refusal (one line naming the input, exit 1) and that the thing is unchanged. Device nodes are made with
/// mknod inside the test's own folder, never the host's /dev.
/// </summary>
public sealed class OutputFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-out").FullName;   // created 0700
    private string In(string name) => Path.Combine(_dir, name);

    public void Dispose() => Directory.Delete(_dir, true);

    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>stat(1)'s file type of the path itself ("regular file", "character special file", "symbolic link").</summary>
    private static string TypeOf(string path) => EngineProcess.RunProgram("stat", ["-c", "%F", path], 10).Stdout.Trim();

    /// <summary>A character device with the given numbers in the test folder (1:3 is what /dev/null is, 1:5 /dev/zero).</summary>
    private string CharDevice(string name, int major, int minor)
    {
        string path = In(name);
        var run = EngineProcess.RunProgram("mknod", [path, "c", major.ToString(), minor.ToString()], 10);
        Assert.True(run.ExitCode == 0, run.ToString());
        return path;
    }

    private string Symlink(string name, string target)
    {
        string path = In(name);
        File.CreateSymbolicLink(path, target);
        return path;
    }

    private string Precious(string name = "precious.txt")
    {
        string path = In(name);
        File.WriteAllText(path, "precious data\n");
        return path;
    }

    private static void AssertRefused(EngineRun run, params string[] words)
    {
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.StartsWith("xhyve: ", run.Stderr);
        Assert.Single(run.Stderr.TrimEnd('\n').Split('\n'));
        foreach (var w in words) Assert.Contains(w, run.Stderr);
        Assert.DoesNotContain("XHYVE-TEST", run.Stdout);   // refused before the guest ran
    }

    private static EngineRun Hello(params string[] extra) => EngineProcess.RunGuest("hello", extra: extra, timeoutSeconds: 30);

    // --exit-file

    [SkippableFact]
    public void ExitFile_OnACharacterDevice_IsRefused_AndTheDeviceStays()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "mknod needs root");
        string device = CharDevice("null", 1, 3);
        AssertRefused(Hello("--exit-file", device), $"--exit-file {device}", "character device");
        Assert.Equal("character special file", TypeOf(device));
    }

    [SkippableFact]
    public void ExitFile_OnASymlink_IsRefused_AndNeitherLinkNorTargetChanges()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string target = Precious();
        string link = Symlink("exit.json", target);
        AssertRefused(Hello("--exit-file", link), $"--exit-file {link}", "symbolic link");
        Assert.Equal("symbolic link", TypeOf(link));
        Assert.Equal("precious data\n", File.ReadAllText(target));
        Assert.Equal(["exit.json", "precious.txt"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
    }

    [SkippableFact]
    public void ExitFile_InAMissingFolder_IsRefused_AndTheFolderIsNotCreated()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string file = In("no/such/exit.json");
        AssertRefused(Hello("--exit-file", file), $"--exit-file {file}", "does not exist");
        Assert.False(Directory.Exists(In("no")));
    }

    [SkippableFact]
    public void ExitFile_OfAnotherUser_IsNotReplaced()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "chown to another user needs root");
        string file = Precious("exit.json");
        Assert.Equal(0, EngineProcess.RunProgram("chown", ["65534", file], 10).ExitCode);
        AssertRefused(Hello("--exit-file", file), $"--exit-file {file}", "belongs to uid 65534");
        Assert.Equal("precious data\n", File.ReadAllText(file));
    }

    [SkippableFact]
    public void ExitFile_ReplacesItsOwnRegularFile_AndLeavesNoTemporaryFile()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string file = Precious("exit.json");
        var run = Hello("--exit-file", file);
        Assert.True(run.Done, run.ToString());
        Assert.Contains("\"exitCode\"", File.ReadAllText(file));
        // The temporary file (created next to the target, then renamed) never stays behind.
        Assert.Equal(["exit.json"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void ExitFile_IsStillWrittenForAnInvalidConfiguration()
    {
        // The launcher learns why an engine did not start from this file; the path checks must not lose that.
        string file = In("exit.json");
        var run = EngineProcess.Run(["-s", "3,floppy", "-f", "kexec,/etc/hostname", "--exit-file", file], 20);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("unknown emulation", File.ReadAllText(file));
    }

    // --engine-log

    [SkippableFact]
    public void EngineLog_TakesTheEnginesOwnOutput_AppendedAfterWhatTheLogHeld()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string log = In("engine.log");
        File.WriteAllText(log, "an earlier run\n");
        var run = Hello("--engine-log", log, "-w", "--engine-log=" + log);
        Assert.True(run.ExitCode is 0 or 2, run.ToString());
        // The guest's COM1 (stdio) and the engine's messages go to the log, none to the streams it was started with.
        Assert.Equal("", run.Stdout);
        Assert.Equal("", run.Stderr);
        string text = File.ReadAllText(log);
        Assert.StartsWith("an earlier run\n", text);
        Assert.Contains("XHYVE-TEST", text);
    }

    [SkippableFact]
    public void EngineLog_OnASymlink_IsRefused_NamingIt_TheTargetUnchanged_AndTheExitFileSaysWhy()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string target = Precious();
        string link = Symlink("engine.log", target);
        string exit = In("exit.json");
        AssertRefused(Hello("--engine-log", link, "--exit-file", exit), "--engine-log", link);
        Assert.Equal("precious data\n", File.ReadAllText(target));
        Assert.Equal("symbolic link", TypeOf(link));
        Assert.Contains("--engine-log", File.ReadAllText(exit));
    }

    [Fact]
    public void EngineLog_WithoutAPath_IsRefusedInOneLine()
    {
        var run = EngineProcess.Run(["-f", "kexec,/etc/hostname", "--engine-log"], 20);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("xhyve: --engine-log: missing value (a path)\n", run.Stderr);
    }

    [Fact]
    public void EngineLog_OnAFifo_IsRefused_NamingTheEngineLog_NotTheConsoleLog()
    {
        string fifo = In("engine.fifo");
        Assert.Equal(0, EngineProcess.RunProgram("mkfifo", [fifo], 10).ExitCode);
        var run = EngineProcess.Run(["-f", "kexec,/etc/hostname", "--engine-log", fifo], 20);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"xhyve: --engine-log {fifo}: is a FIFO; --engine-log must name a regular file, a terminal or /dev/null\n", run.Stderr);
    }

    // -F

    [SkippableFact]
    public void PidFile_ReplacedWhileRunning_IsNotRemovedAtExit()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string pid = In("engine.pid");
        using var p = EngineProcess.Start(["-F", pid, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        EngineProcess.ReadUntil(p, "ready=1", TimeSpan.FromSeconds(30));
        // Someone else's file now has the name (as after a stale-file cleanup and a new engine): not ours to delete.
        File.WriteAllText(In("other.pid"), "12345\n");
        File.Move(In("other.pid"), pid, overwrite: true);
        EngineProcess.Signal(p, "TERM");
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal("12345\n", File.ReadAllText(pid));
    }

    /// <summary>A pid that is certainly dead: a process that has already exited (and been reaped).</summary>
    private static int DeadPid()
    {
        using var p = System.Diagnostics.Process.Start("true")!;
        p.WaitForExit();
        return p.Id;
    }

    [SkippableFact]
    public void PidFile_LeftByAKilledEngine_IsReplaced_ThenRemovedAtExit()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string pid = In("engine.pid");
        File.WriteAllText(pid, $"{DeadPid()}\n");
        using var p = EngineProcess.Start(["-F", pid, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        EngineProcess.ReadUntil(p, "ready=1", TimeSpan.FromSeconds(30));
        Assert.Equal($"{p.Id}\n", File.ReadAllText(pid));
        EngineProcess.Signal(p, "TERM");
        Assert.True(p.WaitForExit(10_000));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));   // neither the pid file nor a temporary file stays
    }

    [SkippableFact]
    public void PidFile_WhosePidIsAliveButNotAnEngine_IsReplaced()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string pid = In("engine.pid");
        File.WriteAllText(pid, $"{Environment.ProcessId}\n");   // the test host: alive, and holds no engine's lock
        var run = Hello("-F", pid);
        Assert.True(run.Done, run.ToString());
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [SkippableFact]
    public void PidFile_ThatHoldsSomethingElse_IsRefused_AndUnchanged()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string file = Precious("notes.txt");
        AssertRefused(Hello("-F", file), $"-F {file}", "does not hold a process id");
        Assert.Equal("precious data\n", File.ReadAllText(file));
    }

    [SkippableFact]
    public void PidFile_OfAnotherUser_IsRefused_AndUnchanged()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "needs root to give the file to another user");
        string pid = In("engine.pid");
        File.WriteAllText(pid, $"{DeadPid()}\n");
        Assert.Equal(0, EngineProcess.RunProgram("chown", ["65534", pid], 10).ExitCode);
        string before = File.ReadAllText(pid);
        AssertRefused(Hello("-F", pid), $"-F {pid}", "belongs to uid 65534");
        Assert.Equal(before, File.ReadAllText(pid));
    }

    [SkippableFact]
    public void PidFile_OnADanglingSymlink_IsRefused_AndNothingIsCreated()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string link = Symlink("engine.pid", In("created-through-link"));
        AssertRefused(Hello("-F", link), $"-F {link}", "symbolic link");
        Assert.False(File.Exists(In("created-through-link")));
    }

    // --control-socket

    [SkippableFact]
    public void ControlSocket_OnARegularFile_IsRefused_AndTheFileStays()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string file = Precious("ctl.sock");
        string exit = In("exit.json");
        AssertRefused(Hello("--control-socket", file, "--exit-file", exit), $"--control-socket {file}", "regular file, not a socket");
        Assert.Equal("precious data\n", File.ReadAllText(file));
        Assert.Contains("not a socket", File.ReadAllText(exit));   // the exit file still tells the launcher why
    }

    [SkippableFact]
    public void ControlSocket_InAMissingFolder_IsRefused_AndTheFolderIsNotCreated()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string socket = In("run/ctl.sock");
        AssertRefused(Hello("--control-socket", socket), $"--control-socket {socket}", "does not exist");
        Assert.False(Directory.Exists(In("run")));
    }

    // autopty=PATH

    [SkippableFact]
    public void AutoPtyNameFile_IsRemovedAtExit()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string name = In("com1.pty");
        var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1,autopty=" + name, "-l", "com2,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 30);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("com1 connected to /dev/pts/", run.Stderr);
        Assert.False(File.Exists(name), "the pty-name file names a pty that is gone");
    }

    [SkippableFact]
    public void AutoPtyNameFile_OnASymlink_IsRefused_AndTheTargetStays()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string target = Precious();
        string link = Symlink("com1.pty", target);
        var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1,autopty=" + link, "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 30);
        AssertRefused(run, $"autopty={link}", "symbolic link");
        Assert.Equal("precious data\n", File.ReadAllText(target));
        Assert.Equal("symbolic link", TypeOf(link));
    }

    // log=PATH

    private static EngineRun LogTo(string path) =>
        EngineProcess.Run(["-s", "31,lpc", "-l", "com1,log=" + path, "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 20);

    [SkippableFact]
    public void Log_OnASymlink_IsRefused_AndTheTargetStays()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string target = Precious();
        string link = Symlink("console.log", target);
        AssertRefused(LogTo(link), $"log={link}", "symbolic link");
        Assert.Equal("precious data\n", File.ReadAllText(target));
    }

    [SkippableFact]
    public void Log_OnAFifo_IsRefusedAtOnce()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string fifo = In("console.fifo");
        Assert.Equal(0, EngineProcess.RunProgram("mkfifo", [fifo], 10).ExitCode);
        AssertRefused(LogTo(fifo), $"log={fifo}", "FIFO", "com1 log must name a regular file");   // before: open() waited for a reader, for ever
    }

    [SkippableFact]
    public void Log_OnACharacterDeviceThatIsNotNull_IsRefused()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "mknod needs root");
        string zero = CharDevice("zero", 1, 5);   // a harmless stand-in for /dev/mem or /dev/port
        AssertRefused(LogTo(zero), $"log={zero}", "neither a terminal nor /dev/null");
    }

    [SkippableFact]
    public void Log_OnTheNullDevice_IsAccepted()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "mknod needs root");
        string device = CharDevice("null", 1, 3);
        var run = LogTo(device);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Equal("character special file", TypeOf(device));
    }

    [SkippableFact]
    public void Log_OfAnotherUser_IsNotAppendedTo()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "chown to another user needs root");
        string file = Precious("console.log");
        Assert.Equal(0, EngineProcess.RunProgram("chown", ["65534", file], 10).ExitCode);
        AssertRefused(LogTo(file), $"log={file}", "belongs to uid 65534");
        Assert.Equal("precious data\n", File.ReadAllText(file));
    }

    // -l com1,PATH (a tty backend)

    [SkippableFact]
    public void TtyBackend_OnARegularFile_IsRefusedWithTheLogHint_AndTheFileStays()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string file = Precious("vmlinuz");
        var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1," + file, "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 20);
        AssertRefused(run, $"com1 {file}", "not a terminal", "log=PATH");
        Assert.Equal("precious data\n", File.ReadAllText(file));
    }

    [SkippableFact]
    public void ARefusedBackend_IsRefusedBeforeAnyOtherBackendCreatesItsFile()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string log = In("com1.log"), name = In("uart.pty"), file = Precious("vmlinuz");
        var run = EngineProcess.Run(["-s", "3,uart,autopty=" + name, "-s", "31,lpc", "-l", "com1,log=" + log, "-l", "com2," + file,
            "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 20);
        AssertRefused(run, $"com2 {file}", "not a terminal");
        Assert.False(File.Exists(log), "com1's log must not be created when com2 is refused");
        Assert.False(File.Exists(name), "the uart's pty-name file must not be written when com2 is refused");
    }

    [SkippableTheory]
    [InlineData("zero", 1, 5)]
    [InlineData("kvm", 10, 232)]   // -l com1,/dev/kvm: a character device, but not a terminal
    public void TtyBackend_OnACharacterDeviceThatIsNotATerminal_IsRefused(string name, int major, int minor)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "mknod needs root");
        string device = CharDevice(name, major, minor);
        var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1," + device, "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 20);
        AssertRefused(run, $"com1 {device}", "not a terminal", "log=PATH");
    }

    [SkippableFact]
    public void TtyBackend_OnATerminal_IsAccepted()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        // A pty from a first engine (autopty) is a terminal the second engine can take as its tty backend.
        string name = In("com1.pty");
        using var first = EngineProcess.Start(["-s", "31,lpc", "-l", "com1,autopty=" + name, "-l", "com2,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        try
        {
            string pts = "";
            for (int i = 0; i < 200 && !pts.StartsWith("/dev/pts/"); i++)
            {
                Thread.Sleep(50);
                if (File.Exists(name)) pts = File.ReadAllText(name).Trim();
            }
            Assert.StartsWith("/dev/pts/", pts);
            var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1," + pts, "-l", "com2,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")}"], 30);
            Assert.True(run.ExitCode == 2, run.ToString());
            Assert.DoesNotContain("not a terminal", run.Stderr);
        }
        finally
        {
            EngineProcess.Signal(first, "TERM");
            first.WaitForExit(10_000);
        }
    }
}
