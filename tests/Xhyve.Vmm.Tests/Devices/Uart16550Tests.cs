using Xhyve.Vmm.Devices.Legacy;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Devices;

public sealed class Uart16550Tests
{
    private const byte Thr = 0, Ier = 1, Iir = 2, Fcr = 2, Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
    private readonly RecordingInterruptLine _irq = new();
    private readonly CollectingSerialOutput _out = new();
    private readonly Uart16550 _uart;

    public Uart16550Tests() => _uart = new Uart16550(_out, _irq);

    [Fact]
    public void WriteThr_TransmitsByteToOutput()
    {
        _uart.Write(Thr, (byte)'A');
        _uart.Write(Thr, (byte)'B');
        Assert.Equal("AB"u8.ToArray(), _out.Bytes);
    }

    [Fact]
    public void Lsr_ReportsTransmitterEmptyAndNoData()
    {
        Assert.Equal(0x60, _uart.Read(Lsr));
    }

    [Fact]
    public void Iir_WithNothingPending_Reads0x01_AndFifoBitsWhenEnabled()
    {
        Assert.Equal(0x01, _uart.Read(Iir));
        _uart.Write(Fcr, 0x01);
        Assert.Equal(0xC1, _uart.Read(Iir));
    }

    [Fact]
    public void DivisorLatch_IsAccessedWhenDlabSet_AndDoesNotTransmit()
    {
        _uart.Write(Lcr, 0x80);
        _uart.Write(0, 0x01);
        _uart.Write(1, 0x02);
        Assert.Equal(0x01, _uart.Read(0));
        Assert.Equal(0x02, _uart.Read(1));
        _uart.Write(Lcr, 0x03);
        Assert.Empty(_out.Bytes);
        Assert.Equal(0x00, _uart.Read(Ier));
    }

    [Fact]
    public void Receive_SetsDataReady_AndRbrPopsInOrder()
    {
        _uart.Write(Fcr, 0x01);
        Assert.Equal(3, _uart.Receive("xyz"u8));
        Assert.Equal(0x61, _uart.Read(Lsr));
        Assert.Equal((byte)'x', _uart.Read(0));
        Assert.Equal((byte)'y', _uart.Read(0));
        Assert.Equal((byte)'z', _uart.Read(0));
        Assert.Equal(0x60, _uart.Read(Lsr));
    }

    [Fact]
    public void Receive_WithFifoDisabled_AcceptsOneByteAtATime()
    {
        Assert.Equal(1, _uart.Receive("ab"u8));
        Assert.Equal(0, _uart.ReceiveSpace);
    }

    [Fact]
    public void Receive_AcceptsAtMostFifoSize_AndReportsSpace()
    {
        _uart.Write(Fcr, 0x01);
        Assert.Equal(16, _uart.Receive(new byte[20]));
        Assert.Equal(0, _uart.ReceiveSpace);
        _uart.Read(0);
        Assert.Equal(1, _uart.ReceiveSpace);
    }

    [Fact]
    public void ReceiveInterrupt_RaisesLine_AndIirReportsDataAvailable()
    {
        _uart.Write(Fcr, 0x01);
        _uart.Write(Ier, 0x01);
        Assert.False(_irq.Level);
        _uart.Receive("q"u8);
        Assert.True(_irq.Level);
        Assert.Equal(0xC4, _uart.Read(Iir));
        _uart.Read(0);
        Assert.False(_irq.Level);
    }

    [Fact]
    public void ThrEmptyInterrupt_RaisedWhenEnabled_ClearedByIirRead()
    {
        _uart.Write(Ier, 0x02);
        Assert.True(_irq.Level);
        Assert.Equal(0x02, _uart.Read(Iir));
        Assert.False(_irq.Level);
        Assert.Equal(0x01, _uart.Read(Iir));
        _uart.Write(Thr, (byte)'z');
        Assert.True(_irq.Level);
    }

    [Fact]
    public void ReceiveDataHasPriorityOverThrEmpty()
    {
        _uart.Write(Ier, 0x03);
        _uart.Receive("a"u8);
        Assert.Equal(0x04, _uart.Read(Iir) & 0x0F);
    }

    [Fact]
    public void Loopback_ReturnsTransmittedBytes_AndMirrorsModemLines()
    {
        _uart.Write(Fcr, 0x01);
        _uart.Write(Mcr, 0x10 | 0x03); // loop + DTR + RTS
        _uart.Write(Thr, 0x5A);
        Assert.Empty(_out.Bytes);
        Assert.Equal(0x5A, _uart.Read(0));
        Assert.Equal(0x30, _uart.Read(Msr) & 0xF0); // CTS + DSR
        Assert.Equal(0, _uart.Receive("host"u8));   // line disconnected in loopback
    }

    [Fact]
    public void ModemStatus_WithoutLoopback_ShowsCarrierDsrCts()
    {
        Assert.Equal(0xB0, _uart.Read(Msr));
    }

    [Fact]
    public void Overrun_SetsLsrOe_ClearedOnRead()
    {
        _uart.Write(Mcr, 0x10);              // loopback lets the guest overfill the FIFO
        _uart.Write(Thr, 1);
        _uart.Write(Thr, 2);                 // FIFO disabled: capacity 1
        Assert.Equal(0x02, _uart.Read(Lsr) & 0x02);
        Assert.Equal(0x00, _uart.Read(Lsr) & 0x02);
        Assert.Equal(1, _uart.Overruns);
    }

    [Fact]
    public void FcrClear_EmptiesReceiveFifo()
    {
        _uart.Write(Fcr, 0x01);
        _uart.Receive("abc"u8);
        _uart.Write(Fcr, 0x03);
        Assert.Equal(0x60, _uart.Read(Lsr));
    }

    [Fact]
    public void Scratch_HoldsValue()
    {
        _uart.Write(Scr, 0x42);
        Assert.Equal(0x42, _uart.Read(Scr));
    }

    [Fact]
    public void ReadingRbrFreesSpace_RaisesReceiveSpaceEvent()
    {
        int raised = 0;
        _uart.ReceiveSpaceAvailable += () => raised++;
        _uart.Receive("a"u8);
        _uart.Read(0);
        Assert.Equal(1, raised);
    }
}
