using System.Management.Automation;

namespace Xhyve.PowerShell;

/// <summary>
/// Runs once per Import-Module, before any cmdlet can start a VM. A .nupkg is a zip whose entries carry no Unix file
/// mode (Publish-PSResource writes none), so a module installed with Install-PSResource or Save-PSResource has an
/// engine host `xhyve` that cannot be executed; Start-XhyveVM runs the one beside these assemblies. The import gives
/// it its execute bits back. In the binary module rather than a nested script module, which cost ~150 ms per import.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer
{
    private const UnixFileMode Execute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    public void OnImport()
    {
        string engine = Path.Combine(Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location) ?? "", "xhyve");
        try
        {
            if (!File.Exists(engine)) return;   // a development build: XHYVE_ENGINE or PATH gives the engine
            var mode = File.GetUnixFileMode(engine);
            if ((mode & Execute) != Execute) File.SetUnixFileMode(engine, mode | Execute);
        }
        // Installed by another user (e.g. -Scope AllUsers as root): only the owner may change it, and Start-XhyveVM
        // then says the engine is not executable, naming it.
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { }
    }
}
