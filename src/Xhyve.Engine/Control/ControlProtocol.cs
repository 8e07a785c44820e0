using System.Text;

namespace Xhyve.Engine.Control;

/// <summary>One control-API line, parsed before anything runs: a known command, or the reason it is refused.</summary>
/// <param name="Command">The first word.</param>
/// <param name="History">"console history": stream from what the console ring still holds.</param>
/// <param name="Error">Why the line is refused (the reply's "error"), or null.</param>
/// <param name="Drive">"media": the drive named (null: the only one).</param>
/// <param name="MediaAction">"media": "insert", "eject", or null to list the drives.</param>
/// <param name="MediumPath">"media DRIVE insert PATH": the path (the rest of the line, spaces kept).</param>
/// <param name="TimeoutMs">"wait-running timeout_ms=N": N (null: not given, <see cref="ControlProtocol.DefaultWaitMs"/>).</param>
public sealed record ControlRequest(string Command, bool History = false, string? Error = null,
    string? Drive = null, string? MediaAction = null, string? MediumPath = null, int? TimeoutMs = null);

/// <summary>
/// The wire format of the control API (docs/control-api.md), apart from the socket: lines of at most
/// <see cref="MaxLine"/> bytes, UTF-8, words separated by spaces. Pure functions, so they are fuzzed
/// (docs/fuzzing.md, target "control") without an engine.
/// </summary>
public static class ControlProtocol
{
    public const int MaxLine = 4096;

    public static readonly IReadOnlyList<string> Commands =
        ["state", "wait-running", "config", "counters", "pause", "resume", "powerbutton", "reboot", "reset", "stop", "media", "console", "console history", "help"];

    public const string MediaUsage = "usage: media | media [DRIVE] eject | media [DRIVE] insert PATH";
    public const string WaitUsage = "usage: wait-running [timeout_ms=N] (N: milliseconds, 1 to 86400000)";
    /// <summary>"wait-running" without timeout_ms: long enough for a large machine's build on a loaded host, bounded so
    /// a client that went away does not leave a waiter for the engine's whole life.</summary>
    public const int DefaultWaitMs = 30_000, MaxWaitMs = 86_400_000;

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
        if (command == "wait-running") return ParseWait(words);
        if (words.Length > 1) return new ControlRequest(command, Error: $"'{command}' takes no arguments");
        if (!Commands.Contains(command)) return new ControlRequest(command, Error: $"unknown command '{command}' (one of: {string.Join(", ", Commands)})");
        return new ControlRequest(command);
    }

    // wait-running [timeout_ms=N]
    private static ControlRequest ParseWait(string[] words)
    {
        if (words.Length == 1) return new ControlRequest("wait-running");
        const string key = "timeout_ms=";
        if (words.Length > 2) return new ControlRequest("wait-running", Error: $"'wait-running' takes one argument at most: {WaitUsage}");
        string arg = words[1];
        if (!arg.StartsWith(key, StringComparison.Ordinal))
            return new ControlRequest("wait-running", Error: $"'wait-running': unknown argument '{arg}': {WaitUsage}");
        string value = arg[key.Length..];
        return int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int ms) && ms is > 0 and <= MaxWaitMs
            ? new ControlRequest("wait-running", TimeoutMs: ms)
            : new ControlRequest("wait-running", Error: $"'wait-running': timeout_ms '{value}' is not a number of milliseconds from 1 to {MaxWaitMs}");
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
