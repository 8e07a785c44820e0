using Xhyve.Vmm.Serial;
using System.Text;

namespace Xhyve.PowerShell.Tests;

/// <summary>What Connect-XhyveVM passes to the guest of what is typed, and when it detaches.</summary>
public sealed class ConsoleKeysTests
{
    /// <summary>Runs the pump over <paramref name="chunks"/> as successive reads (then the end of input), returning
    /// whether it detached, what it sent, and how many reads it made.</summary>
    private static (bool Detached, string Sent, int Reads) Run(params string[] chunks)
    {
        var sent = new StringBuilder();
        int reads = 0;
        bool detached = ConsoleKeys.Pump(buffer =>
        {
            if (reads >= chunks.Length) return 0;
            var bytes = Encoding.Latin1.GetBytes(chunks[reads++]);
            bytes.CopyTo(buffer, 0);
            return bytes.Length;
        }, (bytes, count) => sent.Append(Encoding.Latin1.GetString(bytes, 0, count)), () => true);
        return (detached, sent.ToString(), reads);
    }

    [Fact]
    public void OneCtrlRightBracket_Detaches_OnTheFirstPress()
    {
        Assert.Equal((true, "", 1), Run("\u001d", "after"));
    }

    [Fact]
    public void EveryPress_Detaches_NotJustTheFirstSession()
    {
        // Each Connect-XhyveVM runs its own pump: nothing carried over makes a later one need more presses.
        for (int i = 0; i < 5; i++) Assert.Equal((true, "ls\r", 2), Run("ls\r", "\u001d"));
    }

    [Fact]
    public void BytesTypedBeforeCtrlRightBracket_InTheSameRead_AreSent_AndTheRestDropped()
    {
        Assert.Equal((true, "ab", 1), Run("ab\u001dcd"));
    }

    [Fact]
    public void ControlBytes_AndEscapeSequences_GoToTheGuestAsTyped()
    {
        // Ctrl-C, Ctrl-D, an arrow key, Ctrl-[ (ESC): a serial line carries them, the pump does not interpret them.
        Assert.Equal((false, "\u0003\u0004\u001b[A\u001b", 3), Run("\u0003\u0004", "\u001b[A", "\u001b"));
    }

    [Fact]
    public void NothingTyped_KeepsAsking_UntilTheConsoleEnds()
    {
        int reads = 0, polls = 0;
        bool detached = ConsoleKeys.Pump(_ => { reads++; return -1; }, (_, _) => Assert.Fail("nothing to send"), () => ++polls <= 3);
        Assert.Equal((false, 3), (detached, reads));
    }

    [Fact]
    public void ForwardLength_StopsAtTheFirstCtrlRightBracket()
    {
        Assert.Equal(3, ConsoleKeys.ForwardLength("abc\u001d\u001d"u8, out bool detach));
        Assert.True(detach);
        Assert.Equal(3, ConsoleKeys.ForwardLength("abc"u8, out detach));
        Assert.False(detach);
    }

    [Fact]
    public void RedirectedInput_IsNotATerminal()
    {
        // A pipe stands for `'' | pwsh -c Connect-XhyveVM` and /dev/null for `< /dev/null`: both refused up front.
        using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        Assert.False(RawTerminal.IsTerminal((int)pipe.ClientSafePipeHandle.DangerousGetHandle()));
        using var devNull = File.OpenHandle("/dev/null");
        Assert.False(RawTerminal.IsTerminal((int)devNull.DangerousGetHandle()));
        Assert.Null(RawTerminal.Open((int)devNull.DangerousGetHandle()));
    }
}
