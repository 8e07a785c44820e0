namespace Xhyve.PowerShell;

/// <summary>
/// What Connect-XhyveVM does with what the user types: the terminal's bytes go down the serial line as they are,
/// until Ctrl-] (byte 0x1D, as telnet's escape) detaches. Bytes, not .NET keys: Console.KeyAvailable/ReadKey decode
/// and buffer input on their own (a Ctrl-] could sit in .NET's buffer while KeyAvailable said false, so it took
/// several presses to detach), and keys would have to be turned back into the bytes the terminal sent anyway.
/// </summary>
internal static class ConsoleKeys
{
    /// <summary>Ctrl-]: detaches from the console.</summary>
    public const byte Detach = 0x1d;

    /// <summary>How many bytes of <paramref name="input"/> go to the guest: all of them, or those before a Ctrl-]
    /// (then <paramref name="detach"/> is true and the rest is dropped, as the user is leaving).</summary>
    public static int ForwardLength(ReadOnlySpan<byte> input, out bool detach)
    {
        int at = input.IndexOf(Detach);
        detach = at >= 0;
        return detach ? at : input.Length;
    }

    /// <summary>
    /// Passes input to <paramref name="send"/> until a Ctrl-] (true), the end of the input (false), or
    /// <paramref name="keepGoing"/> turning false (false). <paramref name="read"/> returns the bytes read into the buffer,
    /// 0 at the end of the input, or -1 when nothing came in a while (so that keepGoing is asked again).
    /// </summary>
    public static bool Pump(Func<byte[], int> read, Action<byte[], int> send, Func<bool> keepGoing)
    {
        var buffer = new byte[1024];
        while (keepGoing())
        {
            int n = read(buffer);
            if (n < 0) continue;
            if (n == 0) return false;
            int forward = ForwardLength(buffer.AsSpan(0, n), out bool detach);
            if (forward > 0) send(buffer, forward);
            if (detach) return true;
        }
        return false;
    }
}
