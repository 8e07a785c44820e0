using System.Diagnostics;
using System.Management.Automation;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>The module loads as pwsh loads it: from its own folder, bound to the System.Management.Automation of the
/// PowerShell that hosts it (here the SDK's 7.6.9), not to PowerShellStandard.Library it was compiled against.</summary>
[Collection(HostedCollection.Name)]
public sealed class ModuleLoadTests(HostedModule module)
{
    [Fact]
    public void The_cmdlets_bind_to_the_hosting_SDKs_System_Management_Automation_and_no_other_copy_is_loaded()
    {
        var loaded = AppDomain.CurrentDomain.GetAssemblies().Where(a => a.GetName().Name == "System.Management.Automation").ToList();
        var sma = Assert.Single(loaded);
        Assert.Equal("7.6.9", FileVersionInfo.GetVersionInfo(sma.Location).ProductVersion?.Split('+', ' ')[0]);
        Assert.StartsWith(AppContext.BaseDirectory, sma.Location, StringComparison.Ordinal);

        // The cmdlet assembly was compiled against PowerShellStandard's SMA 3.0.0.0; that reference resolved to the
        // SDK's assembly: its cmdlets derive from the very PSCmdlet type the test sees.
        var cmdlet = (CmdletInfo)module.Run("Get-Command New-XhyveVM").Output.Single().BaseObject;
        var reference = cmdlet.ImplementingType.Assembly.GetReferencedAssemblies().Single(a => a.Name == "System.Management.Automation");
        Assert.Equal(new Version(3, 0, 0, 0), reference.Version);
        Assert.True(cmdlet.ImplementingType.IsSubclassOf(typeof(PSCmdlet)));
        Assert.False(File.Exists(Path.Combine(HostedModule.ModuleFolder, "System.Management.Automation.dll")));
    }

    [Fact]
    public void The_module_and_its_libraries_load_from_the_module_folder_not_the_test_output()
    {
        foreach (var name in new[] { "Xhyve.PowerShell", "Xhyve.Management", "Xhyve.Vmm" })
        {
            // The test project references none of them, so only the module folder can supply them.
            Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, name + ".dll")), $"{name}.dll is in the test output");
            var loaded = AppDomain.CurrentDomain.GetAssemblies().Where(a => a.GetName().Name == name).ToList();
            Assert.Equal(Path.Combine(HostedModule.ModuleFolder, name + ".dll"), Assert.Single(loaded).Location);
        }
        Assert.Equal(HostedModule.ModuleFolder, module.Module.ModuleBase);
    }

    [Fact]
    public void Import_Module_exports_the_manifests_cmdlets_with_its_format_and_type_data()
    {
        var manifest = (System.Collections.Hashtable)module.Run("Import-PowerShellDataFile $args[0]", HostedModule.ManifestPath).Output.Single().BaseObject;
        var declared = ((object[])manifest["CmdletsToExport"]!).Cast<string>().Order(StringComparer.Ordinal);
        Assert.Equal(declared, module.Module.ExportedCmdlets.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new Version((string)manifest["ModuleVersion"]!), module.Module.Version);
        // Xhyve.format.ps1xml: the VM table view, as `Get-XhyveVM` shows it.
        var format = module.Run("Get-FormatData -TypeName Xhyve.PowerShell.XhyveVM");
        format.AssertNoErrors();
        Assert.NotEmpty(format.Output);
    }

    [Fact]
    public void A_VM_is_shown_through_the_modules_table_view()
    {
        using var store = module.UseStore();
        module.Run("New-XhyveVM table -MultibootPath $args[0] -ProcessorCount 3", store.Kernel).AssertNoErrors();
        var shown = module.Run("Get-XhyveVM | Out-String -Width 200");
        shown.AssertNoErrors();
        var lines = ((string)shown.Output.Single().BaseObject).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int header = Array.FindIndex(lines, l => l.StartsWith("Name", StringComparison.Ordinal));
        Assert.True(header >= 0, string.Join("\n", lines));
        Assert.Matches(@"^Name\s+State\s+CPUs?", lines[header]);
        Assert.Matches(@"^table\s+Off\s+3\b", lines[header + 2]);
    }
}
