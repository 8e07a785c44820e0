using System.Text.Json;
using Xhyve.Vmm;

namespace Xhyve.Engine.Control;

/// <summary>--exit-file: how the engine ended, as JSON, for whoever launched it detached (the management
/// library reads it to report a VM's exit code). Written whole to a temporary name, then renamed.</summary>
public static class ExitFile
{
    public static void Write(string path, int exitCode, string? reason)
    {
        try
        {
            string temporary = path + ".tmp";
            using (var stream = File.Create(temporary))
            using (var w = new Utf8JsonWriter(stream))
            {
                w.WriteStartObject();
                w.WriteNumber("exitCode", exitCode);
                w.WriteString("status", Enum.IsDefined((VmExitStatus)exitCode) ? ((VmExitStatus)exitCode).ToString() : "Error");
                if (reason != null) w.WriteString("reason", reason);
                w.WriteString("endedUtc", DateTime.UtcNow);
                w.WriteEndObject();
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"xhyve: --exit-file {path}: {e.Message}");
        }
    }
}
