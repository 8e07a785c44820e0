using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Timers;

namespace Xhyve.Vmm.Devices.Legacy;

/// <summary>
/// The MC146818 RTC and CMOS NVRAM behind ports 0x70 (index) / 0x71 (data). Time of day comes from
/// the host clock (local time unless UTC was asked for, -u); guest writes to the clock move an offset,
/// never the host clock. NVRAM holds the PC memory-size bytes the firmware convention defines.
/// Interrupts (IRQ 8): periodic at the register A rate, alarm and update-ended once a second, each
/// flagged in register C and raised when enabled in register B; reading C clears them and the line.
/// </summary>
public sealed class Rtc : IByteRegisterDevice
{
    // Clock registers.
    public const byte Seconds = 0x00, SecondsAlarm = 0x01, Minutes = 0x02, MinutesAlarm = 0x03, Hours = 0x04,
        HoursAlarm = 0x05, DayOfWeek = 0x06, DayOfMonth = 0x07, Month = 0x08, Year = 0x09,
        RegisterA = 0x0A, RegisterB = 0x0B, RegisterC = 0x0C, RegisterD = 0x0D, Century = 0x32;
    // NVRAM memory-size bytes (IBM PC/AT layout, as bhyve's rtc.c fills them).
    public const byte BaseMemLow = 0x15, BaseMemHigh = 0x16, ExtMemLow = 0x17, ExtMemHigh = 0x18,
        ChecksumHigh = 0x2E, ChecksumLow = 0x2F, ExtMem2Low = 0x30, ExtMem2High = 0x31,
        Above16MLow = 0x34, Above16MHigh = 0x35, Above4GLow = 0x5B, Above4GMid = 0x5C, Above4GHigh = 0x5D;
    /// <summary>The CPU count less one, where QEMU's CMOS has it: SeaBIOS waits after its INIT/SIPI until exactly
    /// that many APs have checked in.</summary>
    public const byte SmpCountLessOne = 0x5F;

    private const byte BSet = 0x80, BPie = 0x40, BAie = 0x20, BUie = 0x10, BBinary = 0x04, B24Hour = 0x02;
    private const byte CIrqf = 0x80, CPf = 0x40, CAf = 0x20, CUf = 0x10;
    private const byte DValid = 0x80;

    private readonly Lock _lock = new();
    private readonly byte[] _nvram = new byte[128];
    private readonly Func<DateTimeOffset> _utcNow;
    private readonly TimeZoneInfo _zone;
    private TimeSpan _offset;          // guest clock minus host clock
    private DateTime? _setting;        // time being written while SET is on
    private byte _index;
    private readonly IInterruptLine? _irq;
    private readonly IDeadlineTimer? _deadline;
    private readonly Func<long> _monotonicNs;
    private long _nextPeriodicNs = long.MaxValue, _nextUpdateNs = long.MaxValue;
    private bool _irqLevel;

    /// <param name="utcNow">The host clock (injected for tests).</param>
    /// <param name="useUtc">-u: the RTC keeps UTC rather than local time.</param>
    /// <param name="lowMemoryBytes">RAM below the PCI hole.</param>
    /// <param name="highMemoryBytes">RAM above 4 GiB.</param>
    /// <param name="zone">The local time zone (default: the host's).</param>
    /// <param name="irq">IRQ 8 (null: no interrupts, for tests of the clock alone).</param>
    /// <param name="deadline">The host timer the RTC arms for its next interrupt.</param>
    /// <param name="monotonicNs">The clock that paces interrupts.</param>
    /// <param name="vcpuCount">The VM's vCPUs (recorded at <see cref="SmpCountLessOne"/>).</param>
    public Rtc(Func<DateTimeOffset> utcNow, bool useUtc, ulong lowMemoryBytes, ulong highMemoryBytes, TimeZoneInfo? zone = null,
        IInterruptLine? irq = null, IDeadlineTimer? deadline = null, Func<long>? monotonicNs = null, int vcpuCount = 1)
    {
        _utcNow = utcNow;
        _irq = irq;
        _deadline = deadline;
        _monotonicNs = monotonicNs ?? HostDeadlineTimer.MonotonicNs;
        _zone = useUtc ? TimeZoneInfo.Utc : zone ?? TimeZoneInfo.Local;
        _nvram[RegisterA] = 0x26;           // 32.768 kHz time base, 1024 Hz rate
        _nvram[RegisterB] = B24Hour;        // BCD, 24-hour
        _nvram[RegisterD] = DValid;
        WriteWord(BaseMemLow, 640);         // KiB of conventional memory
        ulong ext = lowMemoryBytes > (1 << 20) ? (lowMemoryBytes - (1 << 20)) / 1024 : 0;
        WriteWord(ExtMemLow, (ushort)Math.Min(ext, 0xFFFF));
        WriteWord(ExtMem2Low, (ushort)Math.Min(ext, 0xFFFF));
        ulong above16 = lowMemoryBytes > (16 << 20) ? (lowMemoryBytes - (16 << 20)) / 65536 : 0;
        WriteWord(Above16MLow, (ushort)Math.Min(above16, 0xFFFF));
        ulong above4G = Math.Min(highMemoryBytes / 65536, 0xFF_FFFF);
        _nvram[Above4GLow] = (byte)above4G;
        _nvram[Above4GMid] = (byte)(above4G >> 8);
        _nvram[Above4GHigh] = (byte)(above4G >> 16);
        _nvram[SmpCountLessOne] = (byte)Math.Clamp(vcpuCount - 1, 0, 255);
        UpdateChecksum();
    }

    private void WriteWord(byte index, ushort value)
    {
        _nvram[index] = (byte)value;
        _nvram[index + 1] = (byte)(value >> 8);
    }

    // The AT checksum covers 0x10..0x2D.
    private void UpdateChecksum()
    {
        int sum = 0;
        for (int i = 0x10; i <= 0x2D; i++) sum += _nvram[i];
        _nvram[ChecksumHigh] = (byte)(sum >> 8);
        _nvram[ChecksumLow] = (byte)sum;
    }

    private DateTime GuestNow() => _setting ?? TimeZoneInfo.ConvertTime(_utcNow(), _zone).DateTime + _offset;

    public byte Read(byte port)
    {
        lock (_lock)
        {
            if (port == 0) return _index; // not readable on real hardware; harmless
            return ReadRegister(_index);
        }
    }

    public void Write(byte port, byte value)
    {
        lock (_lock)
        {
            if (port == 0) { _index = (byte)(value & 0x7F); return; } // bit 7 is the NMI mask
            WriteRegister(_index, value);
        }
    }

    private byte ReadRegister(byte index)
    {
        if (index <= Year || index == Century)
        {
            var t = GuestNow();
            return index switch
            {
                Seconds => Encode(t.Second),
                Minutes => Encode(t.Minute),
                Hours => EncodeHour(t.Hour),
                DayOfWeek => Encode((int)t.DayOfWeek + 1),
                DayOfMonth => Encode(t.Day),
                Month => Encode(t.Month),
                Year => Encode(t.Year % 100),
                Century => Encode(t.Year / 100),
                _ => _nvram[index], // alarms
            };
        }
        if (index == RegisterA) return (byte)(_nvram[RegisterA] & 0x7F); // UIP never set: reads are consistent
        if (index == RegisterC)
        {
            Advance(_monotonicNs());
            byte c = _nvram[RegisterC];
            _nvram[RegisterC] = 0;
            UpdateIrq();
            return c;
        }
        return _nvram[index];
    }

    private void WriteRegister(byte index, byte value)
    {
        switch (index)
        {
            case Seconds or Minutes or Hours or DayOfMonth or Month or Year or Century:
            {
                if (WithField(GuestNow(), index, value) is not { } t) return; // out of range: ignore the write
                if (_setting != null) _setting = t;
                else _offset += t - GuestNow();
                break;
            }
            case DayOfWeek: break; // derived from the date
            case RegisterA:
                _nvram[RegisterA] = (byte)(value & 0x7F);
                Reschedule(resetPeriodic: true);
                break;
            case RegisterB:
                bool wasSetting = (_nvram[RegisterB] & BSet) != 0, setting = (value & BSet) != 0;
                if (!wasSetting && setting) _setting = GuestNow();
                else if (wasSetting && !setting && _setting is { } target)
                {
                    _setting = null;
                    _offset = target - (GuestNow() - _offset);
                }
                _nvram[RegisterB] = value;
                Reschedule(resetPeriodic: true);
                UpdateIrq();
                break;
            case RegisterC or RegisterD: break; // read-only
            default:
                _nvram[index] = value;
                if (index is >= 0x10 and <= 0x2D) UpdateChecksum();
                break;
        }
    }

    /// <summary>The time with one field replaced, or null when the value is not a valid date or time.</summary>
    private DateTime? WithField(DateTime t, byte index, byte value)
    {
        int v = index == Hours ? DecodeHour(value) : Decode(value);
        int year = t.Year, month = t.Month, day = t.Day, hour = t.Hour, minute = t.Minute, second = t.Second;
        switch (index)
        {
            case Seconds: second = v; break;
            case Minutes: minute = v; break;
            case Hours: hour = v; break;
            case DayOfMonth: day = v; break;
            case Month: month = v; break;
            case Year: year = year / 100 * 100 + v; break;
            case Century: year = v * 100 + year % 100; break;
        }
        bool valid = second is >= 0 and < 60 && minute is >= 0 and < 60 && hour is >= 0 and < 24 && month is >= 1 and <= 12
            && year is >= 1 and <= 9999 && day >= 1 && day <= DateTime.DaysInMonth(year, month);
        return valid ? new DateTime(year, month, day, hour, minute, second) : null;
    }

    /// <summary>Periodic interrupt period from register A's rate select (0: off; 1 and 2 alias 256/128 Hz).</summary>
    private long PeriodNs
    {
        get
        {
            int rs = _nvram[RegisterA] & 0xF;
            if (rs == 0 || (_nvram[RegisterA] & 0x70) != 0x20) return 0;   // off, or the divider is not running
            int shift = rs <= 2 ? rs + 7 : rs - 1;
            return 1_000_000_000L * (1L << shift) / 32768;
        }
    }

    /// <summary>Sets the flags of every event due by <paramref name="now"/>.</summary>
    private void Advance(long now)
    {
        while (_nextPeriodicNs <= now && PeriodNs > 0)
        {
            _nvram[RegisterC] |= CPf;
            _nextPeriodicNs += PeriodNs;
            if (_nextPeriodicNs <= now - 1_000_000_000L) _nextPeriodicNs = now + PeriodNs; // long stall: no burst
        }
        if (_nextUpdateNs <= now)
        {
            _nvram[RegisterC] |= CUf;
            var t = GuestNow();
            if (AlarmMatches(_nvram[SecondsAlarm], t.Second) && AlarmMatches(_nvram[MinutesAlarm], t.Minute) && AlarmMatches(_nvram[HoursAlarm], t.Hour, hour: true))
                _nvram[RegisterC] |= CAf;
            _nextUpdateNs = now + 1_000_000_000L - (now - _nextUpdateNs) % 1_000_000_000L;
        }
    }

    // An alarm byte of 0xC0-0xFF matches every value ("don't care").
    private bool AlarmMatches(byte alarm, int value, bool hour = false) =>
        alarm >= 0xC0 || (hour ? DecodeHour(alarm) : Decode(alarm)) == value;

    private void UpdateIrq()
    {
        byte b = _nvram[RegisterB], c = _nvram[RegisterC];
        bool pending = ((c & CPf) != 0 && (b & BPie) != 0) || ((c & CAf) != 0 && (b & BAie) != 0) || ((c & CUf) != 0 && (b & BUie) != 0);
        _nvram[RegisterC] = (byte)(pending ? c | CIrqf : c & ~CIrqf);
        if (_irq == null || pending == _irqLevel) return;
        _irqLevel = pending;
        _irq.Set(pending);
    }

    private void Reschedule(bool resetPeriodic)
    {
        long now = _monotonicNs();
        byte b = _nvram[RegisterB];
        if (resetPeriodic) _nextPeriodicNs = (b & BPie) != 0 && PeriodNs > 0 ? now + PeriodNs : long.MaxValue;
        bool updates = (b & (BUie | BAie)) != 0 && (b & BSet) == 0;
        if (!updates) _nextUpdateNs = long.MaxValue;
        else if (_nextUpdateNs == long.MaxValue) _nextUpdateNs = now + 1_000_000_000L;
        long next = Math.Min(_nextPeriodicNs, _nextUpdateNs);
        if (_deadline == null) return;
        if (next == long.MaxValue) _deadline.Cancel();
        else _deadline.Arm(next);
    }

    /// <summary>Called when the armed deadline passes: raise what is due and arm the next one.</summary>
    public void Poll()
    {
        lock (_lock)
        {
            Advance(_monotonicNs());
            UpdateIrq();
            Reschedule(resetPeriodic: false);
        }
    }

    private bool Binary => (_nvram[RegisterB] & BBinary) != 0;

    private byte Encode(int value) => Binary ? (byte)value : (byte)(((value / 10) << 4) | (value % 10));

    // An invalid BCD digit decodes to -1, which no range check accepts.
    private int Decode(byte value) => Binary ? value : (value >> 4) > 9 || (value & 0xF) > 9 ? -1 : (value >> 4) * 10 + (value & 0xF);

    private byte EncodeHour(int hour)
    {
        if ((_nvram[RegisterB] & B24Hour) != 0) return Encode(hour);
        int h12 = hour % 12 == 0 ? 12 : hour % 12;
        return (byte)(Encode(h12) | (hour >= 12 ? 0x80 : 0));
    }

    private int DecodeHour(byte value)
    {
        if ((_nvram[RegisterB] & B24Hour) != 0) return Decode(value);
        int h = Decode((byte)(value & 0x7F));
        if (h is < 1 or > 12) return -1;
        return (value & 0x80) != 0 ? h % 12 + 12 : h % 12;
    }
}
