using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Legacy;

/// <summary>Where a UART's transmitted bytes go.</summary>
public interface ISerialOutput
{
    void Write(byte value);
}

/// <summary>
/// A 16550A UART: 16-byte receive FIFO, divisor latch, loopback, and the interrupt identification
/// priorities of the National Semiconductor datasheet (line status > receive data > THR empty > modem status).
/// Transmission is immediate, so THR is always empty. Thread-safe: the vCPU writes registers while a
/// host thread delivers received bytes.
/// </summary>
public sealed class Uart16550 : IByteRegisterDevice
{
    public const int FifoSize = 16;

    // Register offsets.
    private const byte Rbr = 0, Ier = 1, Iir = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
    // IER bits.
    private const byte IerRda = 0x01, IerThre = 0x02, IerRls = 0x04, IerMsi = 0x08;
    // IIR values.
    private const byte IirNone = 0x01, IirMsi = 0x00, IirThre = 0x02, IirRda = 0x04, IirRls = 0x06, IirFifoEnabled = 0xC0;
    // LSR bits.
    private const byte LsrDr = 0x01, LsrOe = 0x02, LsrThre = 0x20, LsrTemt = 0x40;
    // MCR bits.
    private const byte McrDtr = 0x01, McrRts = 0x02, McrOut1 = 0x04, McrOut2 = 0x08, McrLoop = 0x10;
    // MSR bits.
    private const byte MsrCts = 0x10, MsrDsr = 0x20, MsrRi = 0x40, MsrDcd = 0x80;
    private const byte LcrDlab = 0x80;
    private const byte FcrEnable = 0x01, FcrClearRx = 0x02;

    private readonly Lock _lock = new();
    private readonly ISerialOutput _output;
    private readonly IInterruptLine _irq;
    private readonly byte[] _rx = new byte[FifoSize];
    private int _rxHead, _rxCount;
    private byte _ier, _lcr, _mcr, _lsr, _msr, _scr, _dll = 0x0C, _dlh, _fcr;
    private bool _threPending;
    private bool _irqLevel;
    private long _overruns, _txBytes, _rxBytes;

    /// <summary>Set whenever receive FIFO space frees up, so a backend waiting to deliver can continue.</summary>
    public event Action? ReceiveSpaceAvailable;

    public Uart16550(ISerialOutput output, IInterruptLine irq)
    {
        _output = output;
        _irq = irq;
        _msr = ModemStatusFromMcr(0);
    }

    public long TransmittedBytes => Interlocked.Read(ref _txBytes);
    public long ReceivedBytes => Interlocked.Read(ref _rxBytes);
    public long Overruns => Interlocked.Read(ref _overruns);

    private int RxCapacity => (_fcr & FcrEnable) != 0 ? FifoSize : 1;

    /// <summary>Free space in the receive FIFO.</summary>
    public int ReceiveSpace { get { lock (_lock) return (_mcr & McrLoop) != 0 ? 0 : RxCapacity - _rxCount; } }

    /// <summary>Delivers bytes from the host side; returns how many fit (the rest must be offered again).</summary>
    public int Receive(ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if ((_mcr & McrLoop) != 0) return 0; // the line is disconnected in loopback
            int n = 0;
            while (n < data.Length && _rxCount < RxCapacity) PushRx(data[n++]);
            Interlocked.Add(ref _rxBytes, n);
            UpdateInterrupt();
            return n;
        }
    }

    private void PushRx(byte b)
    {
        if (_rxCount == RxCapacity)
        {
            _lsr |= LsrOe;
            Interlocked.Increment(ref _overruns);
            return;
        }
        _rx[(_rxHead + _rxCount) % FifoSize] = b;
        _rxCount++;
    }

    public byte Read(byte offset)
    {
        bool spaceFreed = false;
        byte value;
        lock (_lock)
        {
            switch (offset)
            {
                case Rbr when (_lcr & LcrDlab) != 0: value = _dll; break;
                case Rbr:
                    if (_rxCount > 0)
                    {
                        value = _rx[_rxHead];
                        _rxHead = (_rxHead + 1) % FifoSize;
                        _rxCount--;
                        spaceFreed = true;
                    }
                    else value = 0;
                    break;
                case Ier when (_lcr & LcrDlab) != 0: value = _dlh; break;
                case Ier: value = _ier; break;
                case Iir:
                    value = (byte)(PendingInterrupt() | ((_fcr & FcrEnable) != 0 ? IirFifoEnabled : 0));
                    // Reading IIR while it reports THR empty acknowledges that interrupt.
                    if ((value & 0x0F) == IirThre) _threPending = false;
                    break;
                case Lcr: value = _lcr; break;
                case Mcr: value = _mcr; break;
                case Lsr:
                    value = (byte)(_lsr | LsrThre | LsrTemt | (_rxCount > 0 ? LsrDr : 0));
                    _lsr &= unchecked((byte)~LsrOe); // error bits clear on read
                    break;
                case Msr:
                    value = _msr;
                    _msr &= 0xF0; // delta bits clear on read
                    break;
                case Scr: value = _scr; break;
                default: value = 0xFF; break;
            }
            UpdateInterrupt();
        }
        if (spaceFreed) ReceiveSpaceAvailable?.Invoke();
        return value;
    }

    public void Write(byte offset, byte value)
    {
        bool transmit = false;
        bool spaceFreed = false;
        lock (_lock)
        {
            switch (offset)
            {
                case Rbr when (_lcr & LcrDlab) != 0: _dll = value; break;
                case Rbr:
                    if ((_mcr & McrLoop) != 0) PushRx(value);
                    else transmit = true;
                    _threPending = true;
                    break;
                case Ier when (_lcr & LcrDlab) != 0: _dlh = value; break;
                case Ier:
                    // Enabling the THR-empty interrupt while THR is empty raises it at once.
                    if ((value & IerThre) != 0 && (_ier & IerThre) == 0) _threPending = true;
                    _ier = (byte)(value & 0x0F);
                    break;
                case Iir: // FCR
                    if ((value & FcrEnable) != ((_fcr & FcrEnable)) || (value & FcrClearRx) != 0)
                    {
                        _rxHead = 0; _rxCount = 0; spaceFreed = true;
                    }
                    _fcr = (byte)(value & 0xC9);
                    break;
                case Lcr: _lcr = value; break;
                case Mcr:
                    _mcr = (byte)(value & 0x1F);
                    byte msr = ModemStatusFromMcr(_mcr);
                    byte delta = (byte)(((msr ^ _msr) & (MsrCts | MsrDsr | MsrDcd)) >> 4);
                    if ((_msr & MsrRi) != 0 && (msr & MsrRi) == 0) delta |= 0x04; // trailing edge of RI
                    _msr = (byte)(msr | (_msr & 0x0F) | delta);
                    break;
                case Lsr: break; // read-only (factory test)
                case Msr: break;
                case Scr: _scr = value; break;
            }
            UpdateInterrupt();
        }
        if (transmit)
        {
            Interlocked.Increment(ref _txBytes);
            _output.Write(value);
        }
        if (spaceFreed) ReceiveSpaceAvailable?.Invoke();
    }

    /// <summary>In loopback the modem inputs follow the outputs; otherwise the line is up (DCD, DSR, CTS).</summary>
    private static byte ModemStatusFromMcr(byte mcr)
    {
        if ((mcr & McrLoop) == 0) return MsrDcd | MsrDsr | MsrCts;
        byte msr = 0;
        if ((mcr & McrRts) != 0) msr |= MsrCts;
        if ((mcr & McrDtr) != 0) msr |= MsrDsr;
        if ((mcr & McrOut1) != 0) msr |= MsrRi;
        if ((mcr & McrOut2) != 0) msr |= MsrDcd;
        return msr;
    }

    private byte PendingInterrupt()
    {
        if ((_ier & IerRls) != 0 && (_lsr & LsrOe) != 0) return IirRls;
        if ((_ier & IerRda) != 0 && _rxCount > 0) return IirRda;
        if ((_ier & IerThre) != 0 && _threPending) return IirThre;
        if ((_ier & IerMsi) != 0 && (_msr & 0x0F) != 0) return IirMsi;
        return IirNone;
    }

    private void UpdateInterrupt()
    {
        bool level = PendingInterrupt() != IirNone;
        if (level == _irqLevel) return;
        _irqLevel = level;
        _irq.Set(level);
    }
}
