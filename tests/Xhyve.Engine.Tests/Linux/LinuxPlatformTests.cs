using System.Globalization;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>One boot with four vCPUs, the RTC in UTC (-u), the HPET and ACPI PM
/// timer as clocksources, a pause and resume while the guest keeps time, and SIGTERM pressing the ACPI
/// power button, which the guest answers by powering off (our powerbtn tool, acpid's job).</summary>
public sealed class PlatformBoot : LinuxBootFixture
{
    public const int PauseSeconds = 5;
    public long HostEpochAtEnd { get; private set; }

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        string disk = Path.Combine(dir, "disk.img");
        File.WriteAllBytes(disk, new byte[4 << 20]);
        var spec = new LinuxBootSpec("""
            cs=/sys/devices/system/clocksource/clocksource0
            mark cpus "$(grep -c ^processor /proc/cpuinfo)"
            mark online "$(cat /sys/devices/system/cpu/online)"
            dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null
            dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null
            mark clocksources "$(cat $cs/available_clocksource)"
            original=$(cat $cs/current_clocksource)
            for c in hpet acpi_pm; do
              echo $c > $cs/current_clocksource
              a=$(cut -d' ' -f1 /proc/uptime); sleep 2; b=$(cut -d' ' -f1 /proc/uptime)
              mark clock_$c "$(cat $cs/current_clocksource) $a $b"
            done
            echo $original > $cs/current_clocksource
            /sbin/powerbtn &
            i=0
            while [ $i -lt 10 ]; do mark tick "$i $(date +%s) $(cut -d' ' -f1 /proc/uptime)"; sleep 1; i=$((i + 1)); done
            mark epoch "$(date +%s)"
            mark warnings "$(dmesg | grep -ciE 'clocksource.*unstable|lockup|rcu.*stall|hung task')"
            mark waiting power-button
            wait
            """)
        {
            Cpus = 4,
            EngineArgs = ["-u", "-s", "2,virtio-rnd", "-s", $"3,virtio-blk,{disk}"],
            // Four vCPUs on a 2-core host, then about 25 s of clock checks, ticks and a pause: more than a boot.
            Timeout = TimeSpan.FromSeconds(300),
        };
        long epoch = 0;
        var run = LinuxHarness.Boot(kernel, dir, spec, session =>
        {
            Assert.Equal("listening", session.WaitFor("powerbtn"));
            while (!session.WaitFor("tick").StartsWith("3 ", StringComparison.Ordinal)) { }
            session.Signal("USR1");
            Thread.Sleep(TimeSpan.FromSeconds(PauseSeconds));
            session.Signal("USR2");
            session.WaitFor("waiting");
            epoch = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            session.Signal("TERM");
        });
        HostEpochAtEnd = epoch;
        return run;
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxPlatformTests(PlatformBoot boot) : IClassFixture<PlatformBoot>
{
    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Smp_FourVcpus_AreAllOnline(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("4", run.Marker("cpus"));
        Assert.Equal("0-3", run.Marker("online"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Clocksources_HpetAndAcpiPmTimer_AreOfferedAndKeepTime(string kernel)
    {
        var run = boot.Run(kernel);
        var available = run.Marker("clocksources").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("hpet", available);
        Assert.Contains("acpi_pm", available);
        foreach (var source in new[] { "hpet", "acpi_pm" })
        {
            var parts = run.Marker($"clock_{source}").Split(' ');
            Assert.Equal(source, parts[0]);
            double slept = double.Parse(parts[2], CultureInfo.InvariantCulture) - double.Parse(parts[1], CultureInfo.InvariantCulture);
            // The interval also holds two fork+execs of busybox (up to a few seconds each while the kernel's
            // code is emulated), so only the lower bound is tight: a clock that stands still or crawls fails it.
            Assert.True(slept is >= 1.9 and < 60, $"`sleep 2` took {slept} s by the {source} clocksource");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void PauseResume_GuestClockStaysMonotonicAndCloseToTheHost(string kernel)
    {
        var run = boot.Run(kernel);
        var ticks = run.All("tick").Select(t => t.Split(' ')).Select(p => (Epoch: long.Parse(p[1]), Uptime: double.Parse(p[2], CultureInfo.InvariantCulture))).ToList();
        Assert.Equal(10, ticks.Count);
        for (int i = 1; i < ticks.Count; i++)
        {
            Assert.True(ticks[i].Uptime > ticks[i - 1].Uptime && ticks[i].Epoch >= ticks[i - 1].Epoch, $"time went backwards at tick {i}: {string.Join(" | ", run.All("tick"))}");
            Assert.True(ticks[i].Uptime - ticks[i - 1].Uptime < PlatformBoot.PauseSeconds + 30, $"uptime jumped at tick {i}: {string.Join(" | ", run.All("tick"))}");
        }
        // -u: the RTC keeps UTC, so after the pause the guest's clock is still the host's, give or take the pause.
        long skew = long.Parse(run.Marker("epoch")) - boot.HostEpochAtEnd;
        Assert.True(Math.Abs(skew) <= PlatformBoot.PauseSeconds + 10, $"guest clock - host UTC = {skew} s after a {PlatformBoot.PauseSeconds} s pause");
        Assert.Equal("0", run.Marker("warnings"));
    }

    [SkippableTheory]
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void Sigterm_PressesTheAcpiPowerButton_AndTheGuestPowersOffWithExitZero(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("button/power", run.Marker("powerbtn"));
        run.AssertExit(0);
    }
}
