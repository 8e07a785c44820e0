namespace Xhyve.PowerShell.Tests;

/// <summary>The bytes Connect-XhyveVM sends for keys as .NET on Unix reports them.</summary>
public sealed class ConsoleKeysTests
{
    private static ConsoleKeyInfo Key(char c, ConsoleKey key, bool control = false) => new(c, key, shift: false, alt: false, control);

    [Fact]
    public void CtrlRightBracket_Detaches_AsDotNetReportsIt()
    {
        // What `[Console]::ReadKey($true)` returns in pwsh 7.6 on Linux for Ctrl-] (byte 0x1D): no KeyChar.
        Assert.Equal(ConsoleKeys.Detach, ConsoleKeys.Bytes(Key('\0', ConsoleKey.D5, control: true)));
        Assert.Equal(ConsoleKeys.Detach, ConsoleKeys.Bytes(Key('\u001d', ConsoleKey.Oem6, control: true)));
    }

    [Fact]
    public void ControlLetters_AreTheirControlBytes_WithOrWithoutAKeyChar()
    {
        Assert.Equal("\u0003", ConsoleKeys.Bytes(Key('\0', ConsoleKey.C, control: true)));
        Assert.Equal("\u0003", ConsoleKeys.Bytes(Key('\u0003', ConsoleKey.C, control: true)));
        Assert.Equal("\u0004", ConsoleKeys.Bytes(Key('\0', ConsoleKey.D, control: true)));
    }

    [Fact]
    public void PrintableKeys_Enter_AndCursorKeys_AreWhatATerminalSends()
    {
        Assert.Equal("a", ConsoleKeys.Bytes(Key('a', ConsoleKey.A)));
        Assert.Equal("5", ConsoleKeys.Bytes(Key('5', ConsoleKey.D5)));
        Assert.Equal("\r", ConsoleKeys.Bytes(Key('\r', ConsoleKey.Enter)));
        Assert.Equal("\u001b[A", ConsoleKeys.Bytes(Key('\0', ConsoleKey.UpArrow)));
        Assert.Equal("\u001b[3~", ConsoleKeys.Bytes(Key('\0', ConsoleKey.Delete)));
        Assert.Equal("", ConsoleKeys.Bytes(Key('\0', ConsoleKey.F1)));
    }
}
