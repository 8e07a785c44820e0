using System.Security.Cryptography;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>The same kernel, initramfs and disk image booted under the engine and under QEMU's `pc` machine:
/// what Linux's drivers report about our virtio-blk and virtio-rng must match what they report about
/// QEMU's. The guest then lets /init exit, which panics the kernel; panic=-1 turns that into a reset.</summary>
public sealed class CrossCheckBoot : LinuxBootFixture
{
    private const string Script = """
        mark size "$(cat /sys/block/vda/size)"
        mark ro "$(cat /sys/block/vda/ro)"
        mark sha "$(sha256sum /dev/vda | cut -d' ' -f1)"
        mark rng "$(cat /sys/class/misc/hw_random/rng_current)"
        mark cpus "$(grep -c ^processor /proc/cpuinfo)"
        mark done ok
        exit 1
        """;

    public LinuxRun? Qemu { get; private set; }
    public string ImageSha { get; private set; } = "";

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string disk = Path.Combine(dir, "data.img");
        var data = new byte[8 << 20];
        new Random(1234).NextBytes(data);
        File.WriteAllBytes(disk, data);
        ImageSha = Convert.ToHexStringLower(SHA256.HashData(data));
        // 300 s: QEMU's pc machine spends minutes of an emulated guest's time in its own DSDT (_PRT hits ACPICA's
        // loop timeout twice, ~30 s each), reaching /init at ~125 s where ours takes ~40 s.
        var spec = new LinuxBootSpec(Script)
        {
            Cpus = 1, Timeout = TimeSpan.FromSeconds(300), EngineArgs = ["-s", $"2,virtio-blk,{disk},ro", "-s", "3,virtio-rnd"],
        };
        var ours = LinuxHarness.Boot(kernel, dir, spec);
        Qemu = LinuxHarness.BootQemu(kernel, Directory.CreateDirectory(Path.Combine(dir, "qemu")).FullName, spec,
            ["-drive", $"file={disk},format=raw,if=none,id=d0,readonly=on", "-device", "virtio-blk-pci,drive=d0", "-device", "virtio-rng-pci"]);
        return ours;
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxCrossCheckTests(CrossCheckBoot boot) : IClassFixture<CrossCheckBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void VirtioDevices_LinuxReportsTheSameUnderQemuAndUnderTheEngine(string kernel)
    {
        var ours = boot.Run(kernel);
        var qemu = boot.Qemu!;
        Assert.True(qemu.Markers.ContainsKey("done"), $"QEMU's run did not finish its script.\n{qemu.Describe()}");
        foreach (var key in new[] { "size", "ro", "sha", "rng", "cpus" })
            Assert.True(ours.Marker(key) == qemu.Marker(key), $"{key}: engine '{ours.Marker(key)}', QEMU '{qemu.Marker(key)}'");
        Assert.Equal(boot.ImageSha, ours.Marker("sha"));
        Assert.Equal("1", ours.Marker("ro"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void KernelPanic_WithPanicMinusOne_ResetsTheMachine_ExitTwo(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Contains("Kernel panic - not syncing: Attempted to kill init!", run.Console);
        run.AssertExit(2);
    }
}
