using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Acpi;
using Xhyve.Vmm.Devices.Timers;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Devices;

internal sealed class FakeDeadline : IDeadlineTimer
{
    public long? Deadline { get; private set; }
    public void Arm(long deadlineNs) => Deadline = deadlineNs;
    public void Cancel() => Deadline = null;
}

public sealed class HpetTests
{
    private long _now = 1_000_000_000;
    private readonly FakeDeadline _deadline = new();
    private readonly Dictionary<int, RecordingInterruptLine> _lines = new();
    private readonly Hpet _hpet;

    public HpetTests() => _hpet = new Hpet(() => _now, gsi => _lines.TryGetValue(gsi, out var l) ? l : _lines[gsi] = new RecordingInterruptLine(), _deadline);

    private ulong Read64(ulong offset) { var b = new byte[8]; _hpet.Read(offset, b); return BinaryPrimitives.ReadUInt64LittleEndian(b); }
    private uint Read32(ulong offset) { var b = new byte[4]; _hpet.Read(offset, b); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    private void Write64(ulong offset, ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _hpet.Write(offset, b); }
    private void Write32(ulong offset, uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _hpet.Write(offset, b); }

    private const ulong Route20 = 20 << 9, Enable = 1 << 2, Level = 1 << 1, Periodic = 1 << 3, ValSet = 1 << 6;

    [Fact]
    public void Capabilities_Report10MHz_ThreeTimers_64BitCounter_NoLegacyRoute()
    {
        ulong cap = Read64(0);
        Assert.Equal(100_000_000UL, cap >> 32);
        Assert.Equal(2UL, cap >> 8 & 0x1F);
        Assert.NotEqual(0UL, cap & 1 << 13);
        Assert.Equal(0UL, cap & 1 << 15);
        Assert.Equal(0x8086UL, cap >> 16 & 0xFFFF);
        Assert.Equal(Hpet.RouteCapability, (uint)(Read64(0x100) >> 32));
    }

    [Fact]
    public void Counter_RunsOnlyWhileEnabled_At10MHz()
    {
        _now += 1_000_000;
        Assert.Equal(0UL, Read64(0xF0));
        Write64(0x10, 1);
        _now += 1_000_000;                       // 1 ms = 10 000 ticks
        Assert.Equal(10_000UL, Read64(0xF0));
        Write64(0x10, 0);
        _now += 5_000_000;
        Assert.Equal(10_000UL, Read64(0xF0));
        Write64(0xF0, 42);                       // writable while halted
        Assert.Equal(42UL, Read64(0xF0));
        Assert.Equal(42u, Read32(0xF0));
    }

    [Fact]
    public void OneShotEdge_FiresOnceAtTheComparator()
    {
        Write64(0x100, Enable | Route20);
        Write64(0x108, 1000);
        Write64(0x10, 1);
        Assert.Equal(_now + 100_000, _deadline.Deadline);
        _now += 99_000;
        _hpet.Poll();
        Assert.False(_lines.ContainsKey(20));
        _now += 1_000;
        _hpet.Poll();
        Assert.Equal(new[] { true, false }, _lines[20].Transitions);
        _now += 10_000_000;
        _hpet.Poll();
        Assert.Equal(2, _lines[20].Transitions.Count);
        Assert.Null(_deadline.Deadline);
    }

    [Fact]
    public void LevelTriggered_HoldsTheLineUntilStatusIsCleared()
    {
        Write64(0x100, Enable | Level | Route20);
        Write64(0x108, 10);
        Write64(0x10, 1);
        _now += 1_000;
        _hpet.Poll();
        Assert.True(_lines[20].Level);
        Assert.Equal(1UL, Read64(0x20));
        Write64(0x20, 1);
        Assert.False(_lines[20].Level);
        Assert.Equal(0UL, Read64(0x20));
    }

    [Fact]
    public void Periodic_RefiresEveryPeriod_AndSkipsMissedOnes()
    {
        Write64(0x100, Enable | Periodic | ValSet | Route20);
        Write64(0x108, 100);     // first expiry
        Write64(0x108, 100);     // period
        Write64(0x10, 1);
        for (int i = 0; i < 3; i++) { _now += 10_000; _hpet.Poll(); }
        Assert.Equal(3, _hpet.InterruptsRaised);
        _now += 1_000_000;       // 100 periods late: one interrupt, not a burst
        _hpet.Poll();
        Assert.Equal(4, _hpet.InterruptsRaised);
        Assert.True(Read64(0x108) > Read64(0xF0));
    }

    [Fact]
    public void RouteOutsideTheCapability_IsNotTaken()
    {
        Write64(0x100, Enable | (3UL << 9));
        Assert.Equal(20UL, Read64(0x100) >> 9 & 0x1F);
    }

    [Fact]
    public void BadWidthsAndOffsets_AreIgnored()
    {
        var b = new byte[2];
        _hpet.Read(0, b);
        Assert.Equal(new byte[] { 0xFF, 0xFF }, b);
        _hpet.Write(3, new byte[4]);
        Assert.Equal(0UL, Read64(0x10));
        Assert.Equal(0UL, Read64(0x3F8));
    }
}

public sealed class PowerManagementTests
{
    private long _now;
    private readonly RecordingInterruptLine _sci = new();
    private readonly List<int> _sleeps = new();
    private readonly PowerManagement _pm;

    public PowerManagementTests() => _pm = new PowerManagement(() => _now, _sci, _sleeps.Add);

    private ushort Read16(ulong offset) { var b = new byte[2]; _pm.Read(offset, b); return BinaryPrimitives.ReadUInt16LittleEndian(b); }
    private void Write16(ulong offset, ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); _pm.Write(offset, b); }

    [Fact]
    public void PmTimer_CountsAt3579545Hz()
    {
        var b = new byte[4];
        _now = 1_000_000_000;
        _pm.Read(8, b);
        Assert.Equal(3_579_545u, BinaryPrimitives.ReadUInt32LittleEndian(b));
        _now = 2_000_000_000;
        _pm.Read(8, b);
        Assert.Equal(7_159_090u, BinaryPrimitives.ReadUInt32LittleEndian(b));
    }

    [Fact]
    public void SciEn_ReadsSet_BecauseTheMachineIsAlwaysInAcpiMode()
    {
        Assert.Equal(1, Read16(4) & 1);
        Write16(4, 0);
        Assert.Equal(1, Read16(4) & 1);
    }

    [Fact]
    public void PowerButton_RaisesSciOnlyWhenEnabled_AndStatusIsWriteOneToClear()
    {
        _pm.PressPowerButton();
        Assert.Equal(PowerManagement.PwrBtnSts, Read16(0) & PowerManagement.PwrBtnSts);
        Assert.False(_sci.Level);
        Write16(2, PowerManagement.PwrBtnSts);
        Assert.True(_pm.PowerButtonEnabled);
        Assert.True(_sci.Level);
        Write16(0, PowerManagement.PwrBtnSts);
        Assert.Equal(0, Read16(0) & PowerManagement.PwrBtnSts);
        Assert.False(_sci.Level);
    }

    [Fact]
    public void SleepEnable_ReportsTheSleepType_AndReadsBackClear()
    {
        Write16(4, (ushort)(5 << 10 | PowerManagement.SlpEn));
        Assert.Equal(new[] { 5 }, _sleeps);
        Assert.Equal(0, Read16(4) & PowerManagement.SlpEn);
        Write16(4, 5 << 10);                    // without SLP_EN: nothing happens
        Assert.Single(_sleeps);
    }

    [Fact]
    public void ByteWriteOfTheHighControlByte_AlsoTriggersSleep()
    {
        _pm.Write(5, [(byte)((5 << 10 | PowerManagement.SlpEn) >> 8)]);
        Assert.Equal(new[] { 5 }, _sleeps);
    }

    [Fact]
    public void AccessPastTheBlock_IsIgnored()
    {
        var b = new byte[4];
        _pm.Read(10, b);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, b);
        _pm.Write(10, b);
        Assert.Empty(_sleeps);
    }
}

public sealed class HpetHalfWriteTests
{
    [Fact]
    public void PeriodicComparator_WrittenInHalves_NeedsValSetForEachHalf()
    {
        long now = 0;
        var deadline = new FakeDeadline();
        var hpet = new Hpet(() => now, _ => new RecordingInterruptLine(), deadline);
        void W32(ulong o, uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); hpet.Write(o, b); }
        uint cfg = (20u << 9) | (1u << 2) | (1u << 3) | (1u << 6);
        W32(0x100, cfg); W32(0x108, 1000);
        W32(0x100, cfg); W32(0x10C, 0);
        W32(0x108, 500); W32(0x10C, 0);
        W32(0x10, 1);
        Assert.Equal(1000L * 100, deadline.Deadline);
        now = 1000L * 100;
        hpet.Poll();
        Assert.Equal(1500L * 100, deadline.Deadline);          // next expiry one period later
    }
}

public sealed class HpetHostileTests
{
    [Fact]
    public void HugePeriodicPeriod_DoesNotOverflowOrSpin()
    {
        long now = 0;
        var deadline = new FakeDeadline();
        var hpet = new Hpet(() => now, _ => new RecordingInterruptLine(), deadline);
        void W64(ulong o, ulong v) { var b = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); hpet.Write(o, b); }
        W64(0x100, (20u << 9) | (1u << 2) | (1u << 3) | (1u << 6));
        W64(0x108, 1);                                   // first expiry right away
        W64(0x108, ulong.MaxValue - 5);                  // then a period that wraps the counter
        W64(0x10, 1);
        now = 1_000;
        hpet.Poll();
        hpet.Poll();
        Assert.Equal(1, hpet.InterruptsRaised);
    }
}
