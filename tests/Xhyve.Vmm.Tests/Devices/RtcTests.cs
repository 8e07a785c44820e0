using Xhyve.Vmm.Devices.Legacy;

namespace Xhyve.Vmm.Tests.Devices;

public sealed class RtcTests
{
    private DateTimeOffset _now = new(2026, 11, 21, 13, 45, 59, TimeSpan.Zero);
    private static readonly TimeZoneInfo Plus2 = TimeZoneInfo.CreateCustomTimeZone("T+2", TimeSpan.FromHours(2), "T+2", "T+2");

    private Rtc Create(bool utc = false, ulong low = 256UL << 20, ulong high = 0) => new(() => _now, utc, low, high, Plus2);

    private static byte Get(Rtc rtc, byte reg) { rtc.Write(0, reg); return rtc.Read(1); }
    private static void Set(Rtc rtc, byte reg, byte value) { rtc.Write(0, reg); rtc.Write(1, value); }

    [Fact]
    public void TimeRegisters_AreBcdLocalTimeByDefault()
    {
        var rtc = Create();
        Assert.Equal(0x59, Get(rtc, Rtc.Seconds));
        Assert.Equal(0x45, Get(rtc, Rtc.Minutes));
        Assert.Equal(0x15, Get(rtc, Rtc.Hours));     // 13:45 UTC is 15:45 at +2
        Assert.Equal(0x21, Get(rtc, Rtc.DayOfMonth));
        Assert.Equal(0x11, Get(rtc, Rtc.Month));
        Assert.Equal(0x26, Get(rtc, Rtc.Year));
        Assert.Equal(0x20, Get(rtc, Rtc.Century));
        Assert.Equal(0x07, Get(rtc, Rtc.DayOfWeek)); // Saturday = 7
    }

    [Fact]
    public void UtcOption_KeepsUtc()
    {
        Assert.Equal(0x13, Get(Create(utc: true), Rtc.Hours));
    }

    [Fact]
    public void BinaryMode_ReturnsBinaryValues()
    {
        var rtc = Create();
        Set(rtc, Rtc.RegisterB, 0x06);
        Assert.Equal(59, Get(rtc, Rtc.Seconds));
        Assert.Equal(15, Get(rtc, Rtc.Hours));
    }

    [Fact]
    public void TwelveHourMode_SetsPmBit()
    {
        var rtc = Create();
        Set(rtc, Rtc.RegisterB, 0x00);
        Assert.Equal(0x80 | 0x03, Get(rtc, Rtc.Hours));
    }

    [Fact]
    public void ClockFollowsHostClock()
    {
        var rtc = Create();
        _now = _now.AddSeconds(1);
        Assert.Equal(0x00, Get(rtc, Rtc.Seconds));
        Assert.Equal(0x46, Get(rtc, Rtc.Minutes));
    }

    [Fact]
    public void GuestSettingTheClock_MovesAnOffset_ThatKeepsTicking()
    {
        var rtc = Create();
        Set(rtc, Rtc.RegisterB, 0x82);       // SET
        Set(rtc, Rtc.Hours, 0x08);
        Set(rtc, Rtc.Minutes, 0x00);
        Set(rtc, Rtc.Seconds, 0x00);
        Set(rtc, Rtc.RegisterB, 0x02);       // run
        Assert.Equal(0x08, Get(rtc, Rtc.Hours));
        _now = _now.AddSeconds(30);
        Assert.Equal(0x30, Get(rtc, Rtc.Seconds));
        Assert.Equal(0x00, Get(rtc, Rtc.Minutes));
    }

    [Fact]
    public void RegisterA_NeverShowsUpdateInProgress_RegisterD_ShowsValidRam()
    {
        var rtc = Create();
        Assert.Equal(0x26, Get(rtc, Rtc.RegisterA));
        Assert.Equal(0x80, Get(rtc, Rtc.RegisterD));
    }

    [Fact]
    public void MemorySizeBytes_DescribeLowAndHighRam()
    {
        var rtc = Create(low: 3UL << 30, high: 2UL << 30);
        Assert.Equal(640, Get(rtc, Rtc.BaseMemLow) | Get(rtc, Rtc.BaseMemHigh) << 8);
        Assert.Equal(0xFFFF, Get(rtc, Rtc.ExtMem2Low) | Get(rtc, Rtc.ExtMem2High) << 8);
        Assert.Equal(((3UL << 30) - (16UL << 20)) / 65536, (ulong)(Get(rtc, Rtc.Above16MLow) | Get(rtc, Rtc.Above16MHigh) << 8));
        Assert.Equal((2UL << 30) / 65536, (ulong)(Get(rtc, Rtc.Above4GLow) | Get(rtc, Rtc.Above4GMid) << 8 | Get(rtc, Rtc.Above4GHigh) << 16));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(4, 3)]
    [InlineData(300, 255)]
    public void CpuCountLessOne_IsAt0x5F_WhereSeaBiosReadsHowManyApsToWaitFor(int vcpus, byte expected)
    {
        var rtc = new Rtc(() => DateTimeOffset.UnixEpoch, true, 256UL << 20, 0, vcpuCount: vcpus);
        Assert.Equal(expected, Get(rtc, Rtc.SmpCountLessOne));
    }

    [Fact]
    public void SmallRam_ReportsExtendedMemoryInKib()
    {
        var rtc = Create(low: 8UL << 20);
        Assert.Equal(7 * 1024, Get(rtc, Rtc.ExtMemLow) | Get(rtc, Rtc.ExtMemHigh) << 8);
        Assert.Equal(0, Get(rtc, Rtc.Above16MLow));
    }

    [Fact]
    public void Checksum_CoversBytes10To2D()
    {
        var rtc = Create();
        int sum = 0;
        for (byte i = 0x10; i <= 0x2D; i++) sum += Get(rtc, i);
        Assert.Equal(sum, Get(rtc, Rtc.ChecksumHigh) << 8 | Get(rtc, Rtc.ChecksumLow));
    }

    [Fact]
    public void Nvram_IsReadWrite_AndIndexIgnoresNmiBit()
    {
        var rtc = Create();
        rtc.Write(0, 0x80 | 0x40);
        rtc.Write(1, 0xA5);
        Assert.Equal(0xA5, Get(rtc, 0x40));
    }

    [Theory]
    [InlineData(Rtc.Month, 0xFF)]
    [InlineData(Rtc.Month, 0x13)]
    [InlineData(Rtc.DayOfMonth, 0x31)]   // November has 30 days
    [InlineData(Rtc.Hours, 0x24)]
    [InlineData(Rtc.Seconds, 0x60)]
    public void OutOfRangeTimeWrite_IsIgnored(byte register, byte value)
    {
        var rtc = Create();
        Set(rtc, register, value);
        Assert.Equal(0x11, Get(rtc, Rtc.Month));
        Assert.Equal(0x21, Get(rtc, Rtc.DayOfMonth));
        Assert.Equal(0x15, Get(rtc, Rtc.Hours));
        Assert.Equal(0x59, Get(rtc, Rtc.Seconds));
    }
}

public sealed class RtcInterruptTests
{
    private long _mono = 10_000_000_000;
    private readonly Fakes.RecordingInterruptLine _irq = new();
    private readonly FakeDeadline _deadline = new();
    private readonly Rtc _rtc;

    public RtcInterruptTests() =>
        _rtc = new Rtc(() => new DateTimeOffset(2026, 11, 21, 13, 45, 59, TimeSpan.Zero), true, 256UL << 20, 0, null, _irq, _deadline, () => _mono);

    private byte Get(byte reg) { _rtc.Write(0, reg); return _rtc.Read(1); }
    private void Set(byte reg, byte value) { _rtc.Write(0, reg); _rtc.Write(1, value); }

    [Fact]
    public void PeriodicInterrupt_FollowsTheRegisterARate_AndRegisterCReadClearsIt()
    {
        Set(Rtc.RegisterA, 0x2F);                            // 2 Hz
        Set(Rtc.RegisterB, 0x42);                            // PIE, 24-hour
        Assert.Equal(_mono + 500_000_000, _deadline.Deadline);
        _mono += 500_000_000;
        _rtc.Poll();
        Assert.True(_irq.Level);
        Assert.Equal(0xC0, Get(Rtc.RegisterC));              // IRQF | PF
        Assert.False(_irq.Level);
        Assert.Equal(0x00, Get(Rtc.RegisterC));
        Assert.Equal(_mono + 500_000_000, _deadline.Deadline);
    }

    [Fact]
    public void UpdateEndedAndAlarm_ComeOncePerSecond_WhenEnabled()
    {
        Set(Rtc.SecondsAlarm, 0xFF); Set(Rtc.MinutesAlarm, 0xFF); Set(Rtc.HoursAlarm, 0xFF); // don't care: every second
        Set(Rtc.RegisterB, 0x32);                            // AIE | UIE
        _mono += 1_000_000_000;
        _rtc.Poll();
        Assert.True(_irq.Level);
        Assert.Equal(0xB0, Get(Rtc.RegisterC));              // IRQF | AF | UF
    }

    [Fact]
    public void Alarm_ThatDoesNotMatch_RaisesOnlyTheUpdateFlag()
    {
        Set(Rtc.HoursAlarm, 0x03);                           // 03:xx never matches 13:45
        Set(Rtc.RegisterB, 0x22);                            // AIE only
        _mono += 1_000_000_000;
        _rtc.Poll();
        Assert.False(_irq.Level);
        Assert.Equal(0x10, Get(Rtc.RegisterC));              // UF seen, no IRQF
    }

    [Fact]
    public void RateSelectZero_OrStoppedDivider_GivesNoPeriodicInterrupt()
    {
        Set(Rtc.RegisterA, 0x20);
        Set(Rtc.RegisterB, 0x42);
        Assert.Null(_deadline.Deadline);
        Set(Rtc.RegisterA, 0x7F);                            // divider in reset
        Set(Rtc.RegisterB, 0x42);
        Assert.Null(_deadline.Deadline);
    }
}
