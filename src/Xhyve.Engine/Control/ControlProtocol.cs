using System.Text;

namespace Xhyve.Engine.Control;

/// <summary>One control-API line, parsed before anything runs: a known command, or the reason it is refused.</summary>
/// <param name="Command">The first word.</param>
/// <param name="History">"console history": stream from what the console ring still holds.</param>
/// <param name="Error">Why the line is refused (the reply's "error"), or null.</param>
/// <param name="Drive">"media": the drive named (null: the only one).</param>
/// <param name="MediaAction">"media": "insert", "eject", or null to list the drives.</param>
/// <param name="MediumPath">"media DRIVE insert PATH": the path (the rest of the line, spaces kept).</param>
public sealed record ControlRequest(string Command, bool History = false, string? Error = null,
    string? Drive = null, string? MediaAction = null, string? MediumPath = null);

/// <summary>
/// The wire format of the control API (docs/control-api.md), apart from the socket: lines of at most
/// <see cref="MaxLine"/> bytes, UTF-8, words separated by spaces. Pure functions, so they are fuzzed
/// (docs/fuzzing.md, target "control") without an engine.
/// </summary>
public static class ControlProtocol
{
    public const int MaxLine = 4096;

    public static readonly IReadOnlyList<string> Commands =
        ["state", "config", "counters", "pause", "resume", "powerbutton", "reboot", "reset", "stop", "media", "console", "console history", "help"];

    public const string MediaUsage = "usage: media | media [DRIVE] eject | media [DRIVE] insert PATH";

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
        if (command == "media") return ParseMedia(line, words);
        if (words.Length > 1) return new ControlRequest(command, Error: $"'{command}' takes no arguments");
        if (!Commands.Contains(command)) return new ControlRequest(command, Error: $"unknown command '{command}' (one of: {string.Join(", ", Commands)})");
        return new ControlRequest(command);
    }

    // media | media [DRIVE] eject | media [DRIVE] insert PATH: the path is the rest of the line, so it may hold spaces.
    private static ControlRequest ParseMedia(string line, string[] words)
    {
        if (words.Length == 1) return new ControlRequest("media");
        bool named = words[1] is not ("insert" or "eject");
        int actionAt = named ? 2 : 1;
        if (words.Length <= actionAt || words[actionAt] is not ("insert" or "eject")) return new ControlRequest("media", Error: MediaUsage);
        string action = words[actionAt];
        string? drive = named ? words[1] : null;
        if (action == "eject")
            return words.Length == actionAt + 1 ? new ControlRequest("media", Drive: drive, MediaAction: action)
                : new ControlRequest("media", Error: "'media eject' takes no path: " + MediaUsage);
        // The path starts after the action word: skip the words before it in the line itself, keeping its spaces.
        int at = 0;
        for (int i = 0; i <= actionAt; i++) at = line.IndexOf(words[i], at, StringComparison.Ordinal) + words[i].Length;
        string path = line[at..].Trim();
        return path.Length == 0 ? new ControlRequest("media", Error: "'media insert' needs the image's path: " + MediaUsage)
            : new ControlRequest("media", Drive: drive, MediaAction: action, MediumPath: path);
    }
}
