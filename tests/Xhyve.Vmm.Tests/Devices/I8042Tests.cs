using Xhyve.Vmm.Devices.Legacy;

namespace Xhyve.Vmm.Tests.Devices;

public sealed class I8042Tests
{
    private int _resets;
    private I8042 Create() => new(() => _resets++);

    [Fact]
    public void Command0xFE_RequestsReset()
    {
        var kbc = Create();
        kbc.Write(4, 0xFE);
        Assert.Equal(1, _resets);
    }

    [Fact]
    public void SelfTest_Returns0x55_ThroughTheDataPort()
    {
        var kbc = Create();
        kbc.Write(4, 0xAA);
        Assert.Equal(0x01, kbc.Read(4) & 0x01);
        Assert.Equal(0x55, kbc.Read(0));
        Assert.Equal(0x00, kbc.Read(4) & 0x01);
    }

    [Fact]
    public void CommandByte_CanBeWrittenAndReadBack()
    {
        var kbc = Create();
        kbc.Write(4, 0x60);
        kbc.Write(0, 0x47);
        kbc.Write(4, 0x20);
        Assert.Equal(0x47, kbc.Read(0));
        Assert.Equal(0, _resets);
    }

    [Fact]
    public void OutputPortWithResetBitLow_RequestsReset()
    {
        var kbc = Create();
        kbc.Write(4, 0xD1);
        kbc.Write(0, 0xFE);
        Assert.Equal(1, _resets);
    }
}
