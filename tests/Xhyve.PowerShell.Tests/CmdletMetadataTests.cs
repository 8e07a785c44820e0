using System.Text.RegularExpressions;

using Xhyve.HelpBuilder;

namespace Xhyve.PowerShell.Tests;

/// <summary>The cmdlets follow PowerShell's and the Hyper-V module's conventions, read from the built assembly.</summary>
public sealed class CmdletMetadataTests
{
    private static readonly IReadOnlyList<CmdletInfo> Cmdlets = CmdletMetadata.Read(Path.Combine(AppContext.BaseDirectory, "Xhyve.PowerShell.dll"));

    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir != null && !File.Exists(Path.Combine(dir.FullName, "XhyvePS.sln"))) dir = dir.Parent;
            return dir!.FullName;
        }
    }

    // Get-Verb's list (PowerShell 7): common, communications, data, diagnostic, lifecycle, security, other.
    private static readonly HashSet<string> ApprovedVerbs =
    [
        "Add", "Clear", "Close", "Copy", "Enter", "Exit", "Find", "Format", "Get", "Hide", "Join", "Lock", "Move", "New", "Open", "Optimize",
        "Pop", "Push", "Redo", "Remove", "Rename", "Reset", "Resize", "Search", "Select", "Set", "Show", "Skip", "Split", "Step", "Switch",
        "Undo", "Unlock", "Watch", "Connect", "Disconnect", "Read", "Receive", "Send", "Write", "Backup", "Checkpoint", "Compare", "Compress",
        "Convert", "ConvertFrom", "ConvertTo", "Dismount", "Edit", "Expand", "Export", "Group", "Import", "Initialize", "Limit", "Merge",
        "Mount", "Out", "Publish", "Restore", "Save", "Sync", "Unpublish", "Update", "Debug", "Measure", "Ping", "Repair", "Resolve", "Test",
        "Trace", "Approve", "Assert", "Build", "Complete", "Confirm", "Deny", "Deploy", "Disable", "Enable", "Install", "Invoke", "Register",
        "Request", "Restart", "Resume", "Start", "Stop", "Submit", "Suspend", "Uninstall", "Unregister", "Wait", "Block", "Grant", "Protect",
        "Revoke", "Unblock", "Unprotect", "Use",
    ];

    private static readonly string[] ChangesState = ["New", "Set", "Remove", "Add", "Start", "Stop", "Restart", "Suspend", "Resume"];

    [Fact]
    public void TheAssembly_HasTheCmdletsTheIssueNames()
    {
        string[] expected =
        [
            "Add-XhyveDisk", "Add-XhyveDvdDrive", "Add-XhyveNetworkAdapter", "Connect-XhyveVM", "ConvertFrom-XhyveCommandLine", "Get-XhyveConsoleOutput", "Get-XhyveDisk",
            "Get-XhyveDvdDrive", "Get-XhyveNetworkAdapter", "Get-XhyveVM", "New-XhyveDiskImage", "New-XhyveVM", "Remove-XhyveDisk", "Remove-XhyveDvdDrive", "Remove-XhyveNetworkAdapter",
            "Remove-XhyveVM", "Restart-XhyveVM", "Resume-XhyveVM", "Set-XhyveDvdDrive", "Set-XhyveNetworkAdapter", "Set-XhyveVM", "Start-XhyveVM", "Stop-XhyveVM", "Suspend-XhyveVM",
            "Test-XhyveHost", "Wait-XhyveVM",
        ];
        Assert.Equal(expected, Cmdlets.Select(c => c.Name));
    }

    [Fact]
    public void EveryVerb_IsApproved_AndEveryNoun_StartsWithXhyve() =>
        Assert.All(Cmdlets, c => Assert.True(ApprovedVerbs.Contains(c.Verb) && c.Noun.StartsWith("Xhyve", StringComparison.Ordinal), c.Name));

    [Fact]
    public void EveryCmdletThatChangesState_SupportsShouldProcess_AndRemoveAsksFirst()
    {
        foreach (var c in Cmdlets.Where(c => ChangesState.Contains(c.Verb)))
            Assert.True(c.SupportsShouldProcess, $"{c.Name} changes state but has no -WhatIf/-Confirm");
        foreach (var c in Cmdlets.Where(c => c.Verb == "Remove"))
            Assert.True(c.ConfirmImpact == 3, $"{c.Name}: ConfirmImpact should be High");
        Assert.True(Cmdlets.Single(c => c.Name == "ConvertFrom-XhyveCommandLine").SupportsShouldProcess, "-Save stores a VM");
    }

    [Fact]
    public void EveryCmdlet_DeclaresItsOutputType() =>
        Assert.All(Cmdlets, c => Assert.True(c.OutputTypes.Count > 0, $"{c.Name} has no [OutputType]"));

    [Theory]
    [InlineData("Start-XhyveVM")] [InlineData("Stop-XhyveVM")] [InlineData("Restart-XhyveVM")] [InlineData("Suspend-XhyveVM")]
    [InlineData("Resume-XhyveVM")] [InlineData("Set-XhyveVM")] [InlineData("Remove-XhyveVM")] [InlineData("Wait-XhyveVM")]
    [InlineData("Get-XhyveConsoleOutput")] [InlineData("Connect-XhyveVM")]
    public void VMCmdlets_TakeNameOrVM_AsHyperVDoes(string cmdlet)
    {
        var c = Cmdlets.Single(x => x.Name == cmdlet);
        var name = c.Parameters.Single(p => p.Name == "Name");
        Assert.Equal(("Name", 0, true, true, true, true, "System.String[]"), (name.SetName, name.Position, name.Mandatory, name.FromPipeline, name.FromPipelineByPropertyName, name.SupportsWildcards, name.Type));
        Assert.Contains("VMName", name.Aliases);
        var vm = c.Parameters.Single(p => p.Name == "VM");
        Assert.Equal(("VM", 0, true, true, "Xhyve.PowerShell.XhyveVM[]"), (vm.SetName, vm.Position, vm.Mandatory, vm.FromPipeline, vm.Type));
        Assert.Equal("Name", c.DefaultParameterSetName);
    }

    [Theory]
    [InlineData("Add-XhyveDisk")] [InlineData("Get-XhyveDisk")] [InlineData("Add-XhyveNetworkAdapter")] [InlineData("Get-XhyveNetworkAdapter")]
    public void DeviceCmdlets_TakeVMNameOrVM(string cmdlet)
    {
        var c = Cmdlets.Single(x => x.Name == cmdlet);
        var vmName = c.Parameters.Single(p => p.Name == "VMName");
        Assert.Equal(("Name", 0, true, true), (vmName.SetName, vmName.Position, vmName.FromPipelineByPropertyName, vmName.SupportsWildcards));
        Assert.True(c.Parameters.Single(p => p.Name == "VM").FromPipeline);
    }

    [Theory]
    [InlineData("Set-XhyveNetworkAdapter")] [InlineData("Remove-XhyveNetworkAdapter")]
    public void AdapterCmdlets_TakeVMNameAndName_OrPipedAdapters(string cmdlet)
    {
        var c = Cmdlets.Single(x => x.Name == cmdlet);
        var adapter = c.Parameters.Single(p => p.Name == "NetworkAdapter");
        Assert.Equal(("Adapter", 0, true, true, "Xhyve.PowerShell.XhyveNetworkAdapter[]"), (adapter.SetName, adapter.Position, adapter.Mandatory, adapter.FromPipeline, adapter.Type));
        Assert.Equal(("Name", 0, true), c.Parameters.Where(p => p.Name == "VMName").Select(p => (p.SetName, p.Position, p.Mandatory)).Single());
        Assert.Equal(("Name", 1, true), c.Parameters.Where(p => p.Name == "Name").Select(p => (p.SetName, p.Position, p.Mandatory)).Single());
    }

    [Theory]
    [InlineData("Add-XhyveNetworkAdapter")] [InlineData("Set-XhyveNetworkAdapter")]
    public void AdapterSettings_AreTyped_AndTheOldTapDeviceNameStillWorks(string cmdlet)
    {
        var c = Cmdlets.Single(x => x.Name == cmdlet);
        Assert.Equal("Xhyve.Vmm.Config.NetBackendKind", c.Parameters.Single(p => p.Name == "Mode").Type);
        Assert.Contains("TapDevice", c.Parameters.Single(p => p.Name == "TapName").Aliases);
        Assert.Equal("System.String[]", c.Parameters.Single(p => p.Name == "PortForward").Type);
        Assert.Equal("System.String", c.Parameters.Single(p => p.Name == "MacAddress").Type);
    }

    [Fact]
    public void ActionCmdlets_HavePassThru()
    {
        foreach (var c in Cmdlets.Where(c => c.Verb is "Start" or "Stop" or "Restart" or "Suspend" or "Resume" or "Set" or "Remove" or "Add"))
            Assert.True(c.ParameterNames.Contains("PassThru"), $"{c.Name} has no -PassThru");
    }

    [Fact]
    public void Sizes_AreInt64Bytes_AndCountsAreInt32()
    {
        var sizes = Cmdlets.SelectMany(c => c.Parameters.Where(p => p.Name.EndsWith("Bytes", StringComparison.Ordinal)).Select(p => (c.Name, p))).ToList();
        Assert.NotEmpty(sizes);
        Assert.All(sizes, x => Assert.True(x.p.Type == "System.Int64", $"{x.Name} -{x.p.Name} is {x.p.Type}"));
        var newVm = Cmdlets.Single(c => c.Name == "New-XhyveVM");
        Assert.Equal(0, newVm.Parameters.Single(p => p.Name == "Name").Position);
        Assert.Equal("System.Int32", newVm.Parameters.Single(p => p.Name == "ProcessorCount").Type);
        foreach (var p in new[] { "MemoryStartupBytes", "ProcessorCount", "KernelPath", "InitrdPath", "KernelCommandLine", "MultibootPath", "MultibootModule", "NoAcpi", "Uuid" })
            Assert.Contains(p, newVm.ParameterNames);
    }

    [Fact]
    public void TheManifest_ExportsExactlyTheAssemblysCmdlets()
    {
        string manifest = File.ReadAllText(Path.Combine(Root, "module", "Xhyve.psd1"));
        var block = Regex.Match(manifest, @"CmdletsToExport\s*=\s*@\((?<list>[^)]*)\)").Groups["list"].Value;
        var exported = Regex.Matches(block, "'([^']+)'").Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal);
        Assert.Equal(Cmdlets.Select(c => c.Name), exported);
        Assert.Contains("RootModule           = 'Xhyve.PowerShell.dll'", manifest);
    }

    [Fact]
    public void TheFormatFile_IsValidXml_AndNamesTheTypesTheCmdletsEmit()
    {
        var format = System.Xml.Linq.XDocument.Load(Path.Combine(Root, "module", "Xhyve.format.ps1xml"));
        var typeNames = format.Descendants("TypeName").Select(t => t.Value).ToHashSet();
        foreach (var t in new[] { typeof(XhyveVM), typeof(XhyveDisk), typeof(XhyveNetworkAdapter) })
            Assert.Contains(t.FullName!, typeNames);
        System.Xml.Linq.XDocument.Load(Path.Combine(Root, "module", "Xhyve.types.ps1xml"));
    }
}
