using System.Text.Json;
using Xhyve.Vmm;
using Xhyve.Vmm.Native;

namespace Xhyve.Engine.Control;

/// <summary>--exit-file: how the engine ended, as JSON, for whoever launched it detached (the management
/// library reads it to report a VM's exit code). Written whole to a new temporary file, then renamed; only a
/// regular file of this user is ever replaced (<see cref="OutputFiles.WriteReplacing"/>).</summary>
public static class ExitFile
{
    public static void Write(string path, int exitCode, string? reason, int resets = 0)
    {
        try
        {
            var json = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(json))
            {
                w.WriteStartObject();
                w.WriteNumber("exitCode", exitCode);
                w.WriteString("status", Enum.IsDefined((VmExitStatus)exitCode) ? ((VmExitStatus)exitCode).ToString() : "Error");
                if (reason != null) w.WriteString("reason", reason);
                w.WriteNumber("resets", resets);
                w.WriteString("endedUtc", DateTime.UtcNow);
                w.WriteEndObject();
            }
            OutputFiles.WriteReplacing(path, json.WrittenSpan, "--exit-file");
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"xhyve: {Xhyve.Vmm.Native.SystemErrors.Describe(e)}");
        }
    }
}
