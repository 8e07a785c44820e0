using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>The engine process on bad input: one line naming the input, exit 1, nothing started or written.</summary>
public sealed class BadInputTests
{
    [Theory]
    [InlineData("-c x", "-c x")]
    [InlineData("-m lots", "-m lots")]
    [InlineData("-s 40,hostbridge", "-s 40,hostbridge")]
    [InlineData("-s 3,floppy -f kexec,/etc/hostname", "unknown emulation 'floppy'")]
    [InlineData("-f kexec,/no/such/vmlinuz", "/no/such/vmlinuz: file not found")]
    [InlineData("-l com1,stdio -f kexec,/etc/hostname", "add -s 31,lpc")]
    [InlineData("-Z", "-Z: unknown flag")]
    [InlineData("-s 3,uart -f kexec,/etc/hostname", "-s 0:3:0,uart: missing backend")]
    [InlineData("-s 3,uart,stdio -s 31,lpc -l com1,stdio -f kexec,/etc/hostname", "stdio can be used by only one device")]
    [InlineData("-s 4,testdev,x -f kexec,/etc/hostname", "testdev takes no options")]
    [InlineData("-s 31,lpc -s 31,lpc -f kexec,/etc/hostname", "already used by lpc")]
    public void MalformedCommandLine_ExitsWithStatus1_AndOneMessage(string commandLine, string message)
    {
        string pid = Path.Combine(Path.GetTempPath(), $"xhyve-bad-{Guid.NewGuid():N}.pid");
        var run = EngineProcess.Run(["-F", pid, .. commandLine.Split(' ')]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains(message, run.Stderr);
        Assert.StartsWith("xhyve: ", run.Stderr);
        Assert.Empty(run.Stdout);
        Assert.False(File.Exists(pid), "nothing may be written for a bad command line");
    }

    [SkippableFact]
    public void MemoryAboveTheHosts_IsOneLine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.Run(["-m", "16T", "-f", $"multiboot,{EngineProcess.Guest("hello")}"]);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("xhyve: -m: 16 TiB is more than this host's memory (", run.Stderr);
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
    }

    /// <summary>Issue 11, item 5: ACPI tables that outgrow their 64 KiB below 1 MiB (here one DSDT host bridge
    /// per bus, about 320 bytes each since the routing tables are shared: 200 extra buses) are refused in one line
    /// naming the flags, before the guest runs.</summary>
    [SkippableFact]
    public void AcpiTablesTooLargeForTheirArea_AreOneLine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var buses = Enumerable.Range(1, 200).SelectMany(b => new[] { "-s", $"{b}:0:0,hostbridge" });
        var run = EngineProcess.RunGuest("acpi", extra: ["-A", .. buses]);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith("xhyve: -A with -c 1 and 201 PCI bus(es): the ACPI tables up to the DSDT (", run.Stderr);
        Assert.EndsWith("do not fit the ACPI tables area 0xE0000-0xEFFFF (65536 bytes)", run.Stderr.TrimEnd());
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
        Assert.DoesNotContain("XHYVE-TEST", run.Stdout);
    }

    [SkippableFact]
    public void ControlSocketPathOverTheSunPathLimit_IsOneLine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string folder = Path.Combine(Path.GetTempPath(), $"xhyve-long-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        try
        {
            string socket = Path.Combine(folder, new string('s', 120));
            var run = EngineProcess.Run(["--control-socket", socket, "-f", $"multiboot,{EngineProcess.Guest("hello")}"]);
            Assert.Equal(1, run.ExitCode);
            Assert.Equal($"xhyve: --control-socket {socket}: the path is {socket.Length} bytes long; a Unix socket path can have at most 107 (use a shorter folder)",
                run.Stderr.TrimEnd());
            Assert.Empty(Directory.GetFileSystemEntries(folder));
        }
        finally { Directory.Delete(folder, true); }
    }

    [Theory]
    [InlineData("", "xhyve ctl: '': the socket path is empty")]
    [InlineData("/tmp/0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789.sock",
        "xhyve ctl: '/tmp/0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789.sock': the path is 110 bytes long")]
    public void CtlWithAnUnusableSocketPath_IsOneLine(string socket, string message)
    {
        var run = EngineProcess.Run(["ctl", socket, "state"]);
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith(message, run.Stderr);
        Assert.Single(run.Stderr.TrimEnd().Split('\n'));
    }

    [SkippableFact]
    public void CorruptKernel_IsRefusedNamingTheFile()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = Path.GetTempFileName();
        File.WriteAllBytes(kernel, new byte[4096]);
        try
        {
            var run = EngineProcess.Run(["-s", "31,lpc", "-f", $"kexec,{kernel}"]);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains(kernel, run.Stderr);
            Assert.Contains("not a Linux bzImage", run.Stderr);
        }
        finally { File.Delete(kernel); }
    }

    [SkippableFact]
    public void KernelThatDoesNotFitInRam_IsRefused()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string module = Path.GetTempFileName();
        File.WriteAllBytes(module, new byte[3 << 20]);
        try
        {
            var run = EngineProcess.Run(["-m", "2M", "-f", $"multiboot,{EngineProcess.Guest("hello")},{module}"]);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains(module, run.Stderr);
            Assert.Contains("do not fit", run.Stderr);
        }
        finally { File.Delete(module); }
    }

    [Fact]
    public void Help_PrintsUsage_AndExits0()
    {
        var run = EngineProcess.Run(["-h"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("Usage: xhyve", run.Stdout);
    }

    [Fact]
    public void Version_PrintsTheVersion()
    {
        var run = EngineProcess.Run(["-v"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains(Program.Version, run.Stdout);
    }

    [Fact]
    public void PrintMacs_PrintsNothingWithoutVirtioNet()
    {
        var run = EngineProcess.Run(["-M", "-s", "0,hostbridge"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Empty(run.Stdout);
    }
}
