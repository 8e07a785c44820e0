using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>End-to-end: the engine process boots the freestanding test guests on KVM.</summary>
public sealed class GuestTests
{
    [SkippableFact]
    public void Hello_PrintsOnCom1_ThenResets_WithExitStatus2()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hello");
        Assert.True(run.Done, run.ToString());
        Assert.Contains("Hello from the XhyvePS hello guest", run.Stdout);
        Assert.Equal("0x2badb002", run.Results["magic"]);
        Assert.Equal(((256 << 10) - 1024).ToString(), run.Results["mem_upper_kib"]);
        Assert.Equal(2, run.ExitCode);
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cmos_ReportsHostTimeAndMemorySize(bool utc)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var before = utc ? DateTime.UtcNow : DateTime.Now;
        var run = EngineProcess.RunGuest("cmos", extra: utc ? ["-u", "-m", "5G"] : ["-m", "5G"]);
        var after = utc ? DateTime.UtcNow : DateTime.Now;
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        var guest = new DateTime(int.Parse(r["year"]), int.Parse(r["month"]), int.Parse(r["day"]), int.Parse(r["hour"]), int.Parse(r["min"]), int.Parse(r["sec"]));
        Assert.InRange(guest, before.AddSeconds(-2), after.AddSeconds(2));
        Assert.Equal("0x00000080", r["reg_d"]);
        Assert.Equal("640", r["base_kib"]);
        Assert.Equal("65535", r["ext_kib"]);
        Assert.Equal((((3L << 30) - (16L << 20)) / 65536).ToString(), r["above16m_64k"]);
        Assert.Equal(((2L << 30) / 65536).ToString(), r["above4g_64k"]);
        Assert.Equal((((3L << 30) >> 10) - 1024).ToString(), r["mb_mem_upper_kib"]);
        Assert.Equal("0x000000a5", r["nvram_40"]);
    }

    [SkippableFact]
    public void Pci_GuestEnumeratesHostBridgeAndLpcBridge()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("pci");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x12751275,0x00060000", run.Results["pci_0_0"]);
        Assert.Equal("0x70008086,0x00060100", run.Results["pci_31_0"]);
        Assert.Equal("2", run.Results["pci_functions"]);
        Assert.Equal("0x8000f800", run.Results["cf8_readback"]);
    }

    [SkippableFact]
    public void Pci_AmdHostBridgeAndOtherSlots_AreWhereTheCommandLinePutsThem()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.Run(["-s", "0,amd_hostbridge", "-s", "5,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("pci")}"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x74321022,0x00060000", run.Results["pci_0_0"]);
        Assert.Equal("0x12751275,0x00060000", run.Results["pci_5_0"]);
        Assert.Equal("3", run.Results["pci_functions"]);
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(4)]
    public void Smp_EveryCpuStartsAndReportsItsApicId(int cpus)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("smp", extra: ["-c", cpus.ToString()], timeoutSeconds: 120);
        Assert.True(run.Done, run.ToString());
        Assert.Equal(cpus.ToString(), run.Results["cpuid_logical"]);
        Assert.Equal(cpus.ToString(), run.Results["cpus_started"]);
        for (int i = 0; i < cpus; i++) Assert.Equal(i.ToString(), run.Results[$"cpu_{i}"]);
        if (run.Results.TryGetValue("leaf_b_cores", out var cores)) Assert.Equal(cpus.ToString(), cores);
    }

    [SkippableFact]
    public void Exits_GuestCompletesEveryOutInstruction()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("exits", "n=2000");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("2000", run.Results["exits"]);
    }

    [SkippableFact]
    public void UnknownPort_ReadsAllOnes_WithoutMinusE()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hello", "inport=4660");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x000000ff", run.Results["inport"]);
    }

    [SkippableFact]
    public void UnknownPort_WithMinusE_StopsTheVm_NamingPortAndRip()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("hello", "inport=4660", extra: ["-e"]);
        Assert.False(run.Done);
        Assert.Equal(100, run.ExitCode);
        Assert.Contains("I/O port 0x1234", run.Stderr);
        Assert.Contains("RIP 0x", run.Stderr);
        Assert.Contains("instruction bytes: ec", run.Stderr); // in al, dx
    }

    [SkippableFact]
    public void SerialInput_FromStdin_ReachesTheGuest()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = EngineProcess.Start(["-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,echo=5"]);
        // Input sent before the guest enables its FIFO would be discarded by its FCR write, as on hardware.
        EngineProcess.ReadUntil(p, "echo_ready=5", TimeSpan.FromSeconds(30));
        p.StandardInput.Write("xhyve");
        p.StandardInput.Flush();
        string rest = EngineProcess.ReadUntil(p, "XHYVE-TEST done", TimeSpan.FromSeconds(30));
        Assert.Contains("XHYVE-TEST echo=xhyve", rest);
        Assert.True(p.WaitForExit(10_000));
        Assert.Equal(2, p.ExitCode);
    }

    [SkippableFact]
    public void Sigterm_StopsARunningVmCleanly_WithExitStatus0()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = EngineProcess.Start(["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        EngineProcess.ReadUntil(p, "XHYVE-TEST ready=1", TimeSpan.FromSeconds(30));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        EngineProcess.Signal(p, "TERM");
        Assert.True(p.WaitForExit(10_000), "engine did not stop after SIGTERM");
        Assert.Equal(0, p.ExitCode);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"stop took {sw.Elapsed}");
    }

    [SkippableFact]
    public void Sigusr1PausesTheVcpus_AndSigusr2ResumesThem()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = EngineProcess.Start(["-c", "2", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,ticks=1"]);
        try
        {
            EngineProcess.ReadUntil(p, "tick 3\r\n", TimeSpan.FromSeconds(30));
            EngineProcess.Signal(p, "USR1");
            Thread.Sleep(300);                                    // let a line in flight finish
            string duringPause = EngineProcess.ReadFor(p, TimeSpan.FromSeconds(2));
            Assert.DoesNotContain("tick", duringPause);
            Assert.False(p.HasExited);
            EngineProcess.Signal(p, "USR2");
            EngineProcess.ReadUntil(p, "tick", TimeSpan.FromSeconds(30));
        }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
        }
        Assert.Equal(0, p.ExitCode);
    }

    [SkippableFact]
    public void PidFile_ExistsWhileRunning_IsRemovedAtExit_AndBlocksASecondEngine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string pidFile = Path.Combine(Path.GetTempPath(), $"xhyve-test-{Guid.NewGuid():N}.pid");
        using var p = EngineProcess.Start(["-F", pidFile, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        EngineProcess.ReadUntil(p, "ready=1", TimeSpan.FromSeconds(30));
        Assert.Equal(p.Id.ToString(), File.ReadAllText(pidFile).Trim());
        var second = EngineProcess.RunGuest("hello", extra: ["-F", pidFile]);
        Assert.Equal(1, second.ExitCode);
        Assert.Contains($"an engine (pid {p.Id}) is running with this pid file", second.Stderr);
        Assert.True(File.Exists(pidFile), "the second engine must not remove the first one's pid file");
        EngineProcess.Signal(p, "TERM");
        Assert.True(p.WaitForExit(10_000));
        Assert.False(File.Exists(pidFile));
    }

    [SkippableFact]
    public void LogBackend_AppendsGuestOutputToTheFile()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string log = Path.GetTempFileName();
        try
        {
            File.WriteAllText(log, "previous line\n");
            var run = EngineProcess.Run(["-s", "31,lpc", "-l", "com1,log=" + log, "-f", $"multiboot,{EngineProcess.Guest("hello")}"]);
            Assert.Equal(2, run.ExitCode);
            string text = File.ReadAllText(log);
            Assert.StartsWith("previous line\n", text);
            Assert.Contains("XHYVE-TEST done", text);
            Assert.DoesNotContain("XHYVE-TEST", run.Stdout);
        }
        finally { File.Delete(log); }
    }

    [SkippableFact]
    public void AutoPty_WritesItsNameToThePath_AndCarriesGuestOutput()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string namePath = Path.Combine(Path.GetTempPath(), $"xhyve-pty-{Guid.NewGuid():N}");
        using var p = EngineProcess.Start(["-s", "31,lpc", "-l", "com1,autopty=" + namePath, "-l", "com2,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]);
        try
        {
            string? pts = null;
            for (int i = 0; i < 100 && pts == null; i++)
            {
                if (File.Exists(namePath) && File.ReadAllText(namePath).Trim() is { Length: > 0 } s) pts = s;
                else Thread.Sleep(50);
            }
            Assert.NotNull(pts);
            Assert.StartsWith("/dev/pts/", pts);
            // The guest prints before we attach; a pty keeps what was written, so the output is waiting.
            using var reader = new FileStream(pts!, FileMode.Open, FileAccess.Read);
            var buffer = new byte[4096];
            var text = "";
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (!text.Contains("ready=1") && DateTime.UtcNow < deadline)
            {
                var read = reader.ReadAsync(buffer);
                if (!read.AsTask().Wait(TimeSpan.FromSeconds(20))) break;
                text += System.Text.Encoding.Latin1.GetString(buffer, 0, read.Result);
            }
            Assert.Contains("XHYVE-TEST ready=1", text);
        }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
            File.Delete(namePath);
        }
    }
}
