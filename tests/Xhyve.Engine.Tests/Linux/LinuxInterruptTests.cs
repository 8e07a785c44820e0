
namespace Xhyve.Engine.Tests.Linux;

/// <summary>One boot with one vCPU and -W (virtio functions offer one MSI message instead of MSI-X, so
/// Linux's virtio driver, which uses only MSI-X, takes INTx through the IOAPIC), a PCI UART that Linux
/// makes ttyS2, the RTC in local time (TZ set for the engine), ending in a reboot.</summary>
public sealed class IntxBoot : LinuxBootFixture
{
    /// <summary>A zone without daylight saving, 5 h 30 min ahead of UTC: a local-time RTC is visibly not UTC.</summary>
    public const string Zone = "Asia/Kolkata";
    public const int ZoneOffsetSeconds = 19_800;

    public long HostEpochAtEnd { get; private set; }

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string disk = Path.Combine(dir, "disk.img"), uartLog = Path.Combine(dir, "pci-uart.log");
        File.WriteAllBytes(disk, new byte[4 << 20]);
        var spec = new LinuxBootSpec("""
            mark cpus "$(grep -c ^processor /proc/cpuinfo)"
            dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null && mark disk_read ok
            dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null && mark rng_read ok
            for f in /sys/bus/pci/devices/*; do
              [ "$(cat $f/vendor)" = 0x1af4 ] && mark pci "${f##*/} irq=$(cat $f/irq) msi_vectors=$(ls $f/msi_irqs 2>/dev/null | wc -l)"
            done
            grep -E 'virtio|ttyS' /proc/interrupts | while read -r line; do mark irq "$line"; done
            dmesg | grep ttyS2 | while read -r line; do mark ttyS2 "$line"; done
            echo "XHYVE-PCI-UART says hello" > /dev/ttyS2 && mark uart_write ok
            mark rtc "$(cat /sys/class/rtc/rtc0/date) $(cat /sys/class/rtc/rtc0/time)"
            mark epoch "$(date +%s)"
            mark done ok
            reboot -f
            """)
        {
            Cpus = 1,
            ExtraKernelParameters = "8250.nr_uarts=4",
            Environment = new Dictionary<string, string> { ["TZ"] = Zone },
            EngineArgs = ["-W", "-s", "2,virtio-rnd", "-s", $"3,virtio-blk,{disk}", "-s", $"4,uart,log={uartLog}"],
        };
        var run = LinuxHarness.Boot(kernel, dir, spec);
        HostEpochAtEnd = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return run;
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxInterruptTests(IntxBoot boot) : IClassFixture<IntxBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void MinusW_VirtioInterruptsArriveAsIntxThroughTheIoApic(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("ok", run.Marker("disk_read"));
        Assert.Equal("ok", run.Marker("rng_read"));
        var functions = run.All("pci");
        Assert.True(functions.Count == 2, string.Join(" | ", functions));
        Assert.All(functions, f => Assert.Matches(@"irq=(1[6-9]|2[0-3]) msi_vectors=0$", f)); // PCI GSIs 16-23
        var virtio = run.All("irq").Where(l => l.Contains("virtio")).ToList();
        Assert.True(virtio.Count == 2, string.Join(" | ", run.All("irq")));
        Assert.All(virtio, l => Assert.Contains("IO-APIC", l));
        Assert.All(virtio, l => Assert.True(LinuxHarness.InterruptCount(l) > 0, $"no interrupts on: {l}"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Serial_ConsoleUartRaisesIrq4_AndThePciUartIsTtyS2(string kernel)
    {
        var run = boot.Run(kernel);
        string com1 = run.All("irq").SingleOrDefault(l => l.Contains("ttyS0")) ?? throw new Xunit.Sdk.XunitException(run.Describe());
        Assert.Matches(@"^4:", com1);
        Assert.True(LinuxHarness.InterruptCount(com1) > 0, $"the 8250 driver took no interrupts on COM1: {com1}");
        Assert.Matches(@"0000:00:04\.0: ttyS2 at I/O 0x[0-9a-f]+ \(irq = \d+, base_baud = \d+\) is a 16550A", run.Marker("ttyS2"));
        Assert.Equal("ok", run.Marker("uart_write"));
        Assert.Contains("XHYVE-PCI-UART says hello", File.ReadAllText(Path.Combine(boot.KernelDir(kernel), "pci-uart.log")));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Rtc_WithoutMinusU_KeepsLocalTime(string kernel)
    {
        var run = boot.Run(kernel);
        // Linux reads the RTC as UTC, so a local-time RTC shows up as the zone's offset in the guest's epoch.
        long skew = long.Parse(run.Marker("epoch")) - boot.HostEpochAtEnd;
        Assert.True(Math.Abs(skew - IntxBoot.ZoneOffsetSeconds) < 120, $"guest clock - host UTC = {skew} s; expected about {IntxBoot.ZoneOffsetSeconds} s ({IntxBoot.Zone})");
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Smp_OneVcpu(string kernel) => Assert.Equal("1", boot.Run(kernel).Marker("cpus"));

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Reboot_ExitsTwo(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("ok", run.Marker("done"));
        run.AssertExit(2);
    }
}
