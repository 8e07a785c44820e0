namespace Xhyve.Management.Engine;

/// <summary>Programs found as Process.Start finds them: through the PATH of .NET's environment (what `$env:PATH`
/// changes), not the one the process started with.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static class ProgramSearch
{
    /// <summary>Whether anyone may execute <paramref name="path"/> (an execute bit is set).</summary>
    public static bool IsExecutable(string path) =>
        (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    /// <summary>The first <paramref name="program"/> in a PATH folder that <paramref name="accept"/> takes; null for none.</summary>
    public static string? OnPath(string program, Func<string, bool> accept)
    {
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(folder, program);
            if (accept(candidate)) return candidate;
        }
        return null;
    }
}
