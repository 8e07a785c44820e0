using System.Text;

namespace Xhyve.Engine.Control;

/// <summary>One control-API line, parsed before anything runs: a known command, or the reason it is refused.</summary>
/// <param name="Command">The first word.</param>
/// <param name="History">"console history": stream from what the console ring still holds.</param>
/// <param name="Error">Why the line is refused (the reply's "error"), or null.</param>
public sealed record ControlRequest(string Command, bool History = false, string? Error = null);

/// <summary>
/// The wire format of the control API (docs/control-api.md), apart from the socket: lines of at most
/// <see cref="MaxLine"/> bytes, UTF-8, words separated by spaces. Pure functions, so they are fuzzed
/// (docs/fuzzing.md, target "control") without an engine.
/// </summary>
public static class ControlProtocol
{
    public const int MaxLine = 4096;

    public static readonly IReadOnlyList<string> Commands =
        ["state", "config", "counters", "pause", "resume", "powerbutton", "reboot", "reset", "stop", "console", "console history", "help"];

    /// <summary>Takes the first complete line out of <paramref name="buffer"/>[..<paramref name="filled"/>] (the bytes
    /// after it move to the front); false when no newline has arrived yet. The line is trimmed.</summary>
    public static bool TryTakeLine(byte[] buffer, ref int filled, out string line)
    {
        int newline = Array.IndexOf(buffer, (byte)'\n', 0, filled);
        if (newline < 0)
        {
            line = "";
            return false;
        }
        line = Encoding.UTF8.GetString(buffer, 0, newline).Trim();
        int rest = filled - newline - 1;
        Array.Copy(buffer, newline + 1, buffer, 0, rest);
        filled = rest;
        return true;
    }

    /// <summary>The request a trimmed line makes; null for a blank line (which gets no reply).</summary>
    public static ControlRequest? Parse(string line)
    {
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0) return null;
        string command = words[0];
        if (command == "console")
            return words switch
            {
                [_] => new ControlRequest(command),
                [_, "history"] => new ControlRequest(command, History: true),
                _ => new ControlRequest(command, Error: "usage: console [history]"),
            };
        if (words.Length > 1) return new ControlRequest(command, Error: $"'{command}' takes no arguments");
        if (!Commands.Contains(command)) return new ControlRequest(command, Error: $"unknown command '{command}' (one of: {string.Join(", ", Commands)})");
        return new ControlRequest(command);
    }
}
