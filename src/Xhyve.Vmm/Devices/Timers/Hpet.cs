using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Timers;

/// <summary>
/// The HPET (IA-PC HPET specification 1.0a): a 64-bit main counter at 10 MHz and three comparators,
/// each one-shot or periodic, edge- or level-triggered, routed to IOAPIC pins 20-23. Register logic
/// only: time comes from an injected clock and expiries from an injected deadline timer.
/// </summary>
public sealed class Hpet : IBusDevice
{
    public const int Timers = 3;
    public const long PeriodFs = 100_000_000;                  // 10 MHz
    public const uint RouteCapability = 0x00F0_0000;           // IOAPIC pins 20-23
    public const uint CapabilitiesLow = 0x01 | ((Timers - 1) << 8) | (1 << 13) | (0x8086u << 16);
    private const long TickNs = PeriodFs / 1_000_000;           // 100 ns

    private const ulong ConfEnable = 1;
    private const ulong TnLevel = 1 << 1, TnEnable = 1 << 2, TnPeriodic = 1 << 3, TnPeriodicCap = 1 << 4,
        TnSize64Cap = 1 << 5, TnValSet = 1 << 6, Tn32Bit = 1 << 8, TnRouteMask = 0x1F << 9;

    private readonly Lock _lock = new();
    private readonly Func<long> _nowNs;
    private readonly Func<int, IInterruptLine> _gsi;
    private readonly IDeadlineTimer _deadline;
    private ulong _config, _isr;
    private ulong _counterBase;       // counter value at _baseNs (or the frozen value while disabled)
    private long _baseNs;
    private readonly ulong[] _tconf = new ulong[Timers];
    private readonly ulong[] _comparator = new ulong[Timers];
    private readonly ulong[] _period = new ulong[Timers];
    private readonly bool[] _lineHigh = new bool[Timers];
    private readonly bool[] _armed = new bool[Timers];     // a one-shot that has fired stays quiet until rewritten
    private long _interrupts;

    public Hpet(Func<long> nowNs, Func<int, IInterruptLine> gsiLine, IDeadlineTimer deadline)
    {
        _nowNs = nowNs;
        _gsi = gsiLine;
        _deadline = deadline;
        for (int i = 0; i < Timers; i++) { _tconf[i] = TnPeriodicCap | TnSize64Cap | (20UL << 9); _comparator[i] = ulong.MaxValue; }
    }

    public long InterruptsRaised => Interlocked.Read(ref _interrupts);

    private bool Enabled => (_config & ConfEnable) != 0;
    // Guest-programmed values meet here: the counter wraps at 2^64 like the hardware, never throws.
    private ulong Counter(long now) => Enabled ? unchecked(_counterBase + (ulong)((now - _baseNs) / TickNs)) : _counterBase;

    public void Read(ulong offset, Span<byte> data)
    {
        if (!(data.Length is 4 or 8) || (offset & (ulong)(data.Length - 1)) != 0) { data.Fill(0xFF); return; }
        ulong value;
        lock (_lock) value = ReadRegister(offset & ~7UL, _nowNs());
        if (data.Length == 8) BinaryPrimitives.WriteUInt64LittleEndian(data, value);
        else BinaryPrimitives.WriteUInt32LittleEndian(data, (uint)(value >> (int)((offset & 4) * 8)));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!(data.Length is 4 or 8) || (offset & (ulong)(data.Length - 1)) != 0) return;
        lock (_lock)
        {
            long now = _nowNs();
            ulong reg = offset & ~7UL;
            ulong value = data.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data) : BinaryPrimitives.ReadUInt32LittleEndian(data);
            ulong mask = ulong.MaxValue;
            if (data.Length == 4)
            {
                int shift = (int)((offset & 4) * 8);
                mask = 0xFFFF_FFFFUL << shift;
                value <<= shift;
            }
            if (reg >= 0x108 && reg < 0x100 + 0x20 * Timers && (reg - 0x100) % 0x20 == 0x08)
                WriteComparator((int)((reg - 0x100) / 0x20), value, mask);
            else
                WriteRegister(reg, (ReadRegister(reg, now) & ~mask) | (value & mask), mask, now);
            Reschedule(now);
        }
    }

    private ulong ReadRegister(ulong reg, long now)
    {
        switch (reg)
        {
            case 0x000: return CapabilitiesLow | ((ulong)PeriodFs << 32);
            case 0x010: return _config;
            case 0x020: return _isr;
            case 0x0F0: return Counter(now);
        }
        if (reg >= 0x100 && reg < 0x100 + 0x20 * Timers)
        {
            int n = (int)((reg - 0x100) / 0x20);
            return ((reg - 0x100) % 0x20) switch
            {
                0x00 => _tconf[n] | ((ulong)RouteCapability << 32),
                0x08 => (_tconf[n] & Tn32Bit) != 0 ? _comparator[n] & 0xFFFF_FFFF : _comparator[n],
                _ => 0,
            };
        }
        return 0;
    }

    private void WriteRegister(ulong reg, ulong value, ulong mask, long now)
    {
        switch (reg)
        {
            case 0x010:
            {
                bool was = Enabled;
                ulong counter = Counter(now);
                _config = value & ConfEnable; // legacy replacement is not offered (LEG_RT_CAP is 0)
                if (was != Enabled) { _counterBase = counter; _baseNs = now; }
                return;
            }
            case 0x020:
                // Write 1 to clear a level-triggered timer's status and release its line.
                for (int n = 0; n < Timers; n++)
                    if ((value & (1UL << n) & mask) != 0 && (_isr & (1UL << n)) != 0) { _isr &= ~(1UL << n); SetLine(n, false); }
                return;
            case 0x0F0:
                if (!Enabled) _counterBase = value; // writable only while halted
                return;
        }
        if (reg >= 0x100 && reg < 0x100 + 0x20 * Timers)
        {
            int n = (int)((reg - 0x100) / 0x20);
            switch ((reg - 0x100) % 0x20)
            {
                case 0x00:
                {
                    const ulong writable = TnLevel | TnEnable | TnPeriodic | TnValSet | Tn32Bit | TnRouteMask;
                    ulong next = (_tconf[n] & ~writable) | (value & writable);
                    int route = (int)((next & TnRouteMask) >> 9);
                    if ((RouteCapability & (1u << route)) == 0) next = (next & ~TnRouteMask) | (_tconf[n] & TnRouteMask); // not routable: keep
                    if ((next & TnLevel) == 0 && _lineHigh[n]) { _isr &= ~(1UL << n); SetLine(n, false); }
                    if ((next & TnEnable) != 0 && (_tconf[n] & TnEnable) == 0) _armed[n] = true;
                    _tconf[n] = next;
                    return;
                }
            }
        }
    }

    /// <summary>
    /// A write to a comparator, whole or one 32-bit half: the written bits always go to the period; they
    /// move the comparator itself in one-shot mode, or in periodic mode when Tn_VAL_SET_CNF was set
    /// first (spec 2.3.9.2.2). VAL_SET is consumed by the write, so a guest writing halves sets it again
    /// before the second half.
    /// </summary>
    private void WriteComparator(int n, ulong value, ulong mask)
    {
        if ((_tconf[n] & Tn32Bit) != 0) mask &= 0xFFFF_FFFF;
        if ((_tconf[n] & TnPeriodic) == 0 || (_tconf[n] & TnValSet) != 0)
            _comparator[n] = (_comparator[n] & ~mask) | (value & mask);
        _period[n] = (_period[n] & ~mask) | (value & mask);
        _tconf[n] &= ~TnValSet;
        _armed[n] = true;
    }

    /// <summary>Fires every comparator the counter has reached; called by the deadline timer's owner.</summary>
    public void Poll()
    {
        lock (_lock)
        {
            long now = _nowNs();
            if (!Enabled) return;
            ulong counter = Counter(now);
            for (int n = 0; n < Timers; n++)
            {
                if ((_tconf[n] & TnEnable) == 0 || !_armed[n] || counter < _comparator[n]) continue;
                Fire(n);
                if ((_tconf[n] & TnPeriodic) != 0 && _period[n] > 0)
                {
                    // Skip missed periods rather than firing a burst.
                    ulong behind = (counter - _comparator[n]) / _period[n] + 1;
                    _comparator[n] = unchecked(_comparator[n] + behind * _period[n]);
                    if (_comparator[n] <= counter) _armed[n] = false; // the period wrapped the counter: stop rather than spin
                }
                else _armed[n] = false; // one-shot: quiet until the comparator or enable bit is written again
            }
            Reschedule(now);
        }
    }

    private void Fire(int n)
    {
        Interlocked.Increment(ref _interrupts);
        if ((_tconf[n] & TnLevel) != 0)
        {
            _isr |= 1UL << n;
            SetLine(n, true);
        }
        else
        {
            SetLine(n, true);
            SetLine(n, false);
        }
    }

    private void SetLine(int n, bool level)
    {
        _lineHigh[n] = level;
        _gsi((int)((_tconf[n] & TnRouteMask) >> 9)).Set(level);
    }

    private void Reschedule(long now)
    {
        if (!Enabled) { _deadline.Cancel(); return; }
        ulong counter = Counter(now), soonest = ulong.MaxValue;
        for (int n = 0; n < Timers; n++)
            if ((_tconf[n] & TnEnable) != 0 && _armed[n]) soonest = Math.Min(soonest, _comparator[n]);
        if (soonest == ulong.MaxValue) { _deadline.Cancel(); return; }
        ulong ticks = soonest > counter ? soonest - counter : 0;
        _deadline.Arm(now + (long)Math.Min(ticks, (ulong)(long.MaxValue / TickNs / 2)) * TickNs);
    }
}
