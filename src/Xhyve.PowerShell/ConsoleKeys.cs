namespace Xhyve.PowerShell;

/// <summary>What a key pressed in Connect-XhyveVM sends down the serial line: the bytes a terminal sends.
/// .NET on Unix decodes control bytes into keys and leaves some without a KeyChar (Ctrl-] arrives as
/// Control+D5 with KeyChar 0), so those are turned back into their control bytes here.</summary>
internal static class ConsoleKeys
{
    /// <summary>Ctrl-]: detaches from the console, as telnet's escape.</summary>
    public const string Detach = "\u001d";

    public static string Bytes(ConsoleKeyInfo key)
    {
        switch (key.Key)
        {
            case ConsoleKey.Enter: return "\r";
            case ConsoleKey.UpArrow: return "\u001b[A";
            case ConsoleKey.DownArrow: return "\u001b[B";
            case ConsoleKey.RightArrow: return "\u001b[C";
            case ConsoleKey.LeftArrow: return "\u001b[D";
            case ConsoleKey.Home: return "\u001b[H";
            case ConsoleKey.End: return "\u001b[F";
            case ConsoleKey.Insert: return "\u001b[2~";
            case ConsoleKey.Delete: return "\u001b[3~";
            case ConsoleKey.PageUp: return "\u001b[5~";
            case ConsoleKey.PageDown: return "\u001b[6~";
        }
        if (key.KeyChar != '\0') return key.KeyChar.ToString();
        if (!key.Modifiers.HasFlag(ConsoleModifiers.Control)) return "";
        return key.Key switch
        {
            >= ConsoleKey.A and <= ConsoleKey.Z => ((char)(key.Key - ConsoleKey.A + 1)).ToString(),
            // The control bytes 0x00 and 0x1B-0x1F, which terminals send for Ctrl-2..Ctrl-7 as well as Ctrl-@, [, \, ], ^, _.
            ConsoleKey.D2 or ConsoleKey.Spacebar => "\0",
            ConsoleKey.D3 or ConsoleKey.Oem4 => "\u001b",
            ConsoleKey.D4 or ConsoleKey.Oem5 => "\u001c",
            ConsoleKey.D5 or ConsoleKey.Oem6 => "\u001d",
            ConsoleKey.D6 => "\u001e",
            ConsoleKey.D7 or ConsoleKey.OemMinus => "\u001f",
            _ => "",
        };
    }
}
