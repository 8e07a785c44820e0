using System.Text.Json;

namespace Xhyve.Engine.Tests.Support;

/// <summary>What the control-API tests share: an owner-only folder for the engine's control socket and exit file,
/// and a test guest started with both (and ACPI, a host bridge, an LPC bridge, COM1 on stdio).</summary>
public abstract class ControlledEngineTest(string folderPrefix) : IDisposable
{
    protected readonly string _dir = Directory.CreateTempSubdirectory(folderPrefix).FullName;   // created 0700
    protected string Socket => Path.Combine(_dir, "ctl.sock");
    protected string ExitFile => Path.Combine(_dir, "exit.json");

    public void Dispose()
    {
        Directory.Delete(_dir, true);
        GC.SuppressFinalize(this);
    }

    protected RunningEngine StartGuest(string guest, string cmdline, params string[] extra) => EngineProcess.Start(
        ["-A", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", .. extra, "-f", $"multiboot,{EngineProcess.Guest(guest)},,{cmdline}",
         "--control-socket", Socket, "--exit-file", ExitFile]);

    protected JsonElement ReadExitFile() => JsonDocument.Parse(File.ReadAllText(ExitFile)).RootElement;
}
