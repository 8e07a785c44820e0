namespace Xhyve.Vmm.Serial;

public enum SerialBackendKind { Stdio, AutoPty, Log, Null, Tty }

/// <summary>One backend of a UART, as written on the command line: stdio, autopty[=PATH], log=PATH, null, or a tty path.</summary>
public sealed record SerialBackendSpec(SerialBackendKind Kind, string? Path = null)
{
    /// <summary>Parses one comma-separated item; returns an error message for anything else.</summary>
    public static SerialBackendSpec? TryParse(string item, out string? error)
    {
        error = null;
        if (item == "stdio") return new(SerialBackendKind.Stdio);
        if (item == "null") return new(SerialBackendKind.Null);
        if (item == "autopty") return new(SerialBackendKind.AutoPty);
        if (item.StartsWith("autopty=", StringComparison.Ordinal))
            return item.Length > 8 ? new(SerialBackendKind.AutoPty, item[8..]) : Fail("autopty= needs a path", out error);
        if (item.StartsWith("log=", StringComparison.Ordinal))
            return item.Length > 4 ? new(SerialBackendKind.Log, item[4..]) : Fail("log= needs a path", out error);
        if (item.StartsWith('/')) return new(SerialBackendKind.Tty, item);
        return Fail($"unknown serial backend '{item}' (expected stdio, autopty[=PATH], log=PATH, null or a tty path)", out error);
    }

    /// <summary>A comma-separated list of backends; throws <see cref="FormatException"/> naming a bad one.</summary>
    public static IReadOnlyList<SerialBackendSpec> ParseList(string list)
    {
        if (list.Length == 0) throw new FormatException("missing backend (stdio, autopty, log=PATH, null or a tty)");
        var backends = new List<SerialBackendSpec>();
        foreach (var item in list.Split(','))
        {
            var backend = TryParse(item, out string? error) ?? throw new FormatException(error);
            // The same backend twice (stdio,stdio; log=A,log=A) would double every byte; two stdio or two null
            // are contradictory however they are spelled.
            if (backends.Find(b => b == backend || (b.Kind == backend.Kind && backend.Kind is SerialBackendKind.Stdio or SerialBackendKind.Null)) is { } earlier)
                throw new FormatException($"{item}: {earlier} was already given (each backend may appear once)");
            backends.Add(backend);
        }
        return backends;
    }

    private static SerialBackendSpec? Fail(string message, out string? error)
    {
        error = message;
        return null;
    }

    public override string ToString() => Kind switch
    {
        SerialBackendKind.Stdio => "stdio",
        SerialBackendKind.Null => "null",
        SerialBackendKind.AutoPty => Path == null ? "autopty" : $"autopty={Path}",
        SerialBackendKind.Log => $"log={Path}",
        _ => Path!,
    };
}
