using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Acpi;

/// <summary>
/// The ACPI fixed hardware (ACPI 6.4 §4.8): the PM1a event block (status, enable), the PM1a control
/// block and the PM timer, as one 12-byte I/O range (event at 0, control at 4, timer at 8). The SCI is
/// level-triggered and high while an enabled status bit is set. Sleeping in S5 powers the VM off.
/// </summary>
public sealed class PowerManagement : IBusDevice
{
    public const ushort TmrSts = 1 << 0, PwrBtnSts = 1 << 8, RtcSts = 1 << 10, WakSts = 1 << 15;
    public const ushort SciEn = 1 << 0, SlpEn = 1 << 13;
    public const long TimerHz = 3_579_545;
    private const ushort StatusWritable = TmrSts | 1 << 5 | PwrBtnSts | 1 << 9 | RtcSts | WakSts;
    private const ushort EnableWritable = TmrSts | 1 << 5 | PwrBtnSts | 1 << 9 | RtcSts;

    private readonly Lock _lock = new();
    private readonly Func<long> _nowNs;
    private readonly IInterruptLine _sci;
    private readonly Action<int> _sleep;
    private ushort _status, _enable, _control = SciEn;
    private bool _sciLevel;

    /// <param name="nowNs">Monotonic clock for the PM timer.</param>
    /// <param name="sci">The SCI (IRQ 9).</param>
    /// <param name="sleep">Called with SLP_TYP when the guest sets SLP_EN.</param>
    public PowerManagement(Func<long> nowNs, IInterruptLine sci, Action<int> sleep)
    {
        _nowNs = nowNs;
        _sci = sci;
        _sleep = sleep;
    }

    /// <summary>The power button was pressed (the host asked for a graceful shutdown).</summary>
    public void PressPowerButton()
    {
        lock (_lock)
        {
            _status |= PwrBtnSts;
            UpdateSci();
        }
    }

    /// <summary>Whether the guest enabled the power-button event (an ACPI OS is listening).</summary>
    public bool PowerButtonEnabled { get { lock (_lock) return (_enable & PwrBtnSts) != 0; } }

    /// <summary>PM timer: 3.579545 MHz, 32 bits (TMR_VAL_EXT).</summary>
    public uint TimerValue => (uint)(Math.BigMul(_nowNs(), TimerHz) / 1_000_000_000);

    public void Read(ulong offset, Span<byte> data)
    {
        Span<byte> regs = stackalloc byte[12];
        lock (_lock)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(regs, _status);
            BinaryPrimitives.WriteUInt16LittleEndian(regs[2..], _enable);
            BinaryPrimitives.WriteUInt16LittleEndian(regs[4..], (ushort)(_control & ~SlpEn));
            BinaryPrimitives.WriteUInt32LittleEndian(regs[8..], TimerValue);
        }
        if (offset + (ulong)data.Length > 12) { data.Fill(0xFF); return; }
        regs.Slice((int)offset, data.Length).CopyTo(data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset + (ulong)data.Length > 12) return;
        int sleepType = -1;
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                int at = (int)offset + i;
                byte b = data[i];
                switch (at)
                {
                    case 0: _status &= (ushort)~(b & StatusWritable & 0xFF); break;          // write 1 to clear
                    case 1: _status &= (ushort)~((b << 8) & StatusWritable); break;
                    case 2: _enable = (ushort)((_enable & 0xFF00) | (b & EnableWritable & 0xFF)); break;
                    case 3: _enable = (ushort)((_enable & 0x00FF) | ((b << 8) & EnableWritable)); break;
                    case 4: _control = (ushort)((_control & 0xFF00) | b | SciEn); break;      // always in ACPI mode
                    case 5: _control = (ushort)((_control & 0x00FF) | (b << 8)); break;
                }
            }
            if (offset <= 5 && offset + (ulong)data.Length > 5 && (_control & SlpEn) != 0)
            {
                sleepType = (_control >> 10) & 7;
                _control &= unchecked((ushort)~SlpEn);
            }
            UpdateSci();
        }
        if (sleepType >= 0) _sleep(sleepType);
    }

    private void UpdateSci()
    {
        bool level = (_control & SciEn) != 0 && (_status & _enable) != 0;
        if (level == _sciLevel) return;
        _sciLevel = level;
        _sci.Set(level);
    }
}
