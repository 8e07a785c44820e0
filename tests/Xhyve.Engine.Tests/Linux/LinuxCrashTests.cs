namespace Xhyve.Engine.Tests.Linux;

/// <summary>kill -9 of the engine while Linux writes and fsyncs files on ext4 on a split+sparse image: the
/// file system must come back with only a journal replay, and every file Linux reported fsync'ed must be intact.</summary>
public sealed class CrashBoot : LinuxBootFixture
{
    public const string SparseOptions = "size=64M,split=16M,sparse";
    public const int FilesBeforeKill = 6;

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string flat = Path.Combine(dir, "fresh.img"), sparse = Path.Combine(dir, "sparse.img");
        HostTools.MakeExt4(flat, "64M", new Dictionary<string, string> { ["before.txt"] = "made on the host" });
        var convert = HostTools.Disk("convert", flat, sparse, SparseOptions);
        Assert.True(convert.ExitCode == 0, convert.ToString());
        File.Delete(flat);
        var spec = new LinuxBootSpec("""
            mount -t ext4 /dev/vda /mnt && mark mounted ok
            i=0
            while true; do
              dd if=/dev/urandom of=/mnt/f$i bs=4096 count=8 2>/dev/null
              sync /mnt/f$i && sync /mnt && mark fsynced "f$i $(sha256sum /mnt/f$i | cut -d' ' -f1)"
              i=$((i + 1))
            done
            """)
        { Cpus = 2, EngineArgs = ["-s", $"2,virtio-blk,{sparse},{SparseOptions}"] };
        return LinuxHarness.Boot(kernel, dir, spec, session =>
        {
            for (int i = 0; i < FilesBeforeKill; i++) session.WaitFor("fsynced");
            session.Process.Kill(); // SIGKILL mid-write: the guest is still writing the next file
        });
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxCrashTests(CrashBoot boot) : IClassFixture<CrashBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void KillMinus9_WhileLinuxFsyncsOnASparseImage_JournalReplaysCleanly_AndFsyncedFilesAreIntact(string kernel)
    {
        var run = boot.Run(kernel);
        string dir = boot.KernelDir(kernel), sparse = Path.Combine(dir, "sparse.img"), copy = Path.Combine(dir, "after-kill.img");
        var check = HostTools.Disk("check", sparse, CrashBoot.SparseOptions);
        Assert.True(check.ExitCode == 0, $"the sparse image's LUT is inconsistent after kill -9:\n{check}");
        File.Delete(copy);
        var convert = HostTools.Disk("convert", sparse, copy, "--from", CrashBoot.SparseOptions);
        Assert.True(convert.ExitCode == 0, convert.ToString());

        // Read-only first: the journal must be there to replay (the kill came mid-transaction).
        var readOnly = HostTools.Run("e2fsck", "-fn", copy);
        Assert.Contains("recovery", readOnly.Stdout + readOnly.Stderr);
        // Replaying the journal (-p: preen, what a boot does) must be all that is needed...
        var replay = HostTools.Run("e2fsck", "-fp", copy);
        Assert.True(replay.ExitCode is 0 or 1, $"e2fsck -fp found damage beyond the journal (exit {replay.ExitCode}):\n{replay.Stdout}{replay.Stderr}");
        // ...after which the file system is clean.
        HostTools.AssertFsckClean(copy);

        var fsynced = run.All("fsynced");
        Assert.True(fsynced.Count >= CrashBoot.FilesBeforeKill, run.Describe());
        foreach (var entry in fsynced)
        {
            var (name, sha) = (entry.Split(' ')[0], entry.Split(' ')[1]);
            byte[] bytes = HostTools.ReadExt4File(copy, "/" + name);
            Assert.True(bytes.Length == 32768 && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)) == sha,
                $"{name}, reported fsync'ed by Linux, is not intact after kill -9 ({bytes.Length} bytes)");
        }
    }
}
