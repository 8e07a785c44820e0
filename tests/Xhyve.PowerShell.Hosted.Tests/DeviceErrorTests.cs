using System.Management.Automation;
using static Xhyve.PowerShell.Hosted.Tests.ErrorAssert;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>The device cmdlets' errors (issue 13, Hyper-V's conventions): a missing VM is VMNotFound as Get-XhyveVM
/// reports it, a missing or duplicate disk or adapter has its own id and category with the object as given for
/// target, and the definition is left as it was. ConvertFrom-XhyveCommandLine's bad lines are non-terminating.</summary>
[Collection(HostedCollection.Name)]
public sealed class DeviceErrorTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVm(string name) => module.Run("New-XhyveVM $args[0] -MultibootPath $args[1]", name, _store.Kernel).AssertNoErrors();

    [Theory]
    [InlineData("Add-XhyveDisk nosuch -Path $args[0]", "AddXhyveDiskCommand")]
    [InlineData("Get-XhyveDisk -VMName nosuch", "GetXhyveDiskCommand")]
    [InlineData("Remove-XhyveDisk -VMName nosuch -Path $args[0] -Confirm:$false", "RemoveXhyveDiskCommand")]
    [InlineData("Remove-XhyveDisk -VMName nosuch -Path $args[0]", "RemoveXhyveDiskCommand")]
    [InlineData("Add-XhyveNetworkAdapter -VMName nosuch -Name eth0", "AddXhyveNetworkAdapterCommand")]
    [InlineData("Get-XhyveNetworkAdapter -VMName nosuch", "GetXhyveNetworkAdapterCommand")]
    [InlineData("Set-XhyveNetworkAdapter -VMName nosuch -Name 'Network Adapter' -StableMacAddress", "SetXhyveNetworkAdapterCommand")]
    [InlineData("Remove-XhyveNetworkAdapter -VMName nosuch -Name 'Network Adapter' -Confirm:$false", "RemoveXhyveNetworkAdapterCommand")]
    [InlineData("Remove-XhyveNetworkAdapter -VMName nosuch -Name 'Network Adapter'", "RemoveXhyveNetworkAdapterCommand")]
    public void Every_device_cmdlet_reports_a_missing_VM_as_VMNotFound_like_Get_XhyveVM_without_asking(string script, string cmdletClass)
    {
        NewVm("other");   // a store that exists, with another VM in it
        var result = module.Run(script, _store.Image());
        var error = result.SingleError();
        AssertError(error, "VMNotFound", cmdletClass, ErrorCategory.ObjectNotFound, "nosuch");
        Assert.IsType<ItemNotFoundException>(error.Exception);
        Assert.Contains("'nosuch'", error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(result.Prompts);
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "nosuch")));
    }

    [Fact]
    public void Removing_a_disk_the_VM_does_not_have_is_DiskNotFound_with_the_path_as_given_and_the_VM_is_unchanged()
    {
        NewVm("disks");
        module.Run("Add-XhyveDisk disks -Path $args[0]", _store.Image()).AssertNoErrors();
        string before = _store.Definition("disks");
        var error = module.Run("Push-Location $args[0]; try { Remove-XhyveDisk -VMName disks -Path other.img -Confirm:$false } finally { Pop-Location }", _store.Work).SingleError();
        AssertError(error, "DiskNotFound", "RemoveXhyveDiskCommand", ErrorCategory.ObjectNotFound, "other.img");
        Assert.Contains(Path.Combine(_store.Work, "other.img"), error.Exception.Message, StringComparison.Ordinal);
        Assert.Contains("'disks'", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("disks"));
    }

    [Fact]
    public void Adding_a_disk_the_VM_already_has_is_DiskExists_with_the_path_as_target_and_the_VM_is_unchanged()
    {
        NewVm("twice");
        string image = _store.Image();
        module.Run("Add-XhyveDisk twice -Path $args[0]", image).AssertNoErrors();
        string before = _store.Definition("twice");
        var error = module.Run("Add-XhyveDisk twice -Path $args[0] -ReadOnly", image).SingleError();
        AssertError(error, "DiskExists", "AddXhyveDiskCommand", ErrorCategory.ResourceExists, image);
        Assert.Contains($"already has the disk {image}", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("twice"));
    }

    [Theory]
    [InlineData("Set-XhyveNetworkAdapter -VMName nics -Name eth9 -StableMacAddress", "SetXhyveNetworkAdapterCommand")]
    [InlineData("Remove-XhyveNetworkAdapter -VMName nics -Name eth9 -Confirm:$false", "RemoveXhyveNetworkAdapterCommand")]
    public void An_unknown_adapter_name_is_NetworkAdapterNotFound_with_the_name_as_target_and_the_VM_is_unchanged(string script, string cmdletClass)
    {
        NewVm("nics");
        module.Run("Add-XhyveNetworkAdapter nics -Name eth0").AssertNoErrors();
        string before = _store.Definition("nics");
        var error = module.Run(script).SingleError();
        AssertError(error, "NetworkAdapterNotFound", cmdletClass, ErrorCategory.ObjectNotFound, "eth9");
        Assert.Contains("no network adapter named 'eth9'", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("nics"));
    }

    [Fact]
    public void An_adapter_name_already_used_is_NetworkAdapterExists_with_the_name_as_target_and_the_VM_is_unchanged()
    {
        NewVm("dup");
        module.Run("Add-XhyveNetworkAdapter dup -Name eth0").AssertNoErrors();
        string before = _store.Definition("dup");
        var error = module.Run("Add-XhyveNetworkAdapter dup -Name eth0 -MacAddress 02:00:00:00:00:01").SingleError();
        AssertError(error, "NetworkAdapterExists", "AddXhyveNetworkAdapterCommand", ErrorCategory.ResourceExists, "eth0");
        Assert.Contains("already has a network adapter named 'eth0'", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("dup"));
    }

    [Fact]
    public void A_bad_line_in_a_pipeline_of_command_lines_is_a_non_terminating_error_naming_it_and_the_next_lines_are_converted()
    {
        const string Unterminated = "-c 2 -f 'kexec,vmlinuz", UnknownFlag = "-c 2 -Q -f kexec,vmlinuz", Good = "-c 3 -f kexec,vmlinuz";
        var result = module.Run("$args | ConvertFrom-XhyveCommandLine", Unterminated, UnknownFlag, Good);
        Assert.Null(result.Thrown);
        Assert.Equal(2, result.Errors.Count);
        AssertError(result.Errors[0], "UnterminatedQuote", "ConvertFromXhyveCommandLineCommand", ErrorCategory.InvalidArgument, Unterminated);
        Assert.Contains("unterminated ' quote", result.Errors[0].Exception.Message, StringComparison.Ordinal);
        AssertError(result.Errors[1], "InvalidXhyveCommandLine", "ConvertFromXhyveCommandLineCommand", ErrorCategory.InvalidArgument, UnknownFlag);
        Assert.Contains("-Q", result.Errors[1].Exception.Message, StringComparison.Ordinal);
        Assert.Equal([3], result.Output.Select(o => o.P<int>("ProcessorCount")));
    }

    [Fact]
    public void An_unterminated_quote_in_one_line_is_a_non_terminating_UnterminatedQuote_error_targeting_the_line()
    {
        const string Line = "-m 1G -f \"kexec,vmlinuz";
        var error = module.Run("ConvertFrom-XhyveCommandLine $args[0]", Line).SingleError();
        AssertError(error, "UnterminatedQuote", "ConvertFromXhyveCommandLineCommand", ErrorCategory.InvalidArgument, Line);
    }

    [Theory]
    [InlineData("sync,bogus", "bogus", "bogus: unknown block option")]
    [InlineData("sectorsize=4096,size=6K", "size=6K", "size=6144: not a multiple of the 4096-byte sector")]
    public void InvalidDiskOptions_targets_the_option_that_is_wrong(string options, string target, string message)
    {
        NewVm("opts");
        string before = _store.Definition("opts");
        var error = module.Run("Add-XhyveDisk opts -Path $args[0] -Options $args[1].Split(',')", Path.Combine(_store.Work, "new.img"), options).SingleError();
        AssertError(error, "InvalidDiskOptions", "AddXhyveDiskCommand", ErrorCategory.InvalidArgument, target);
        Assert.StartsWith("-Options: " + message, error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("opts"));
    }

    [Fact]
    public void PatternMissing_targets_the_For_value_and_says_what_Pattern_is()
    {
        NewVm("nopattern");
        var error = module.Command("Wait-XhyveVM", new Dictionary<string, object?> { ["Name"] = "nopattern", ["For"] = "ConsoleText" }).ThrownRecord();
        Assert.Equal("PatternMissing,Xhyve.PowerShell.Cmdlets.WaitXhyveVMCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal("ConsoleText", error.TargetObject?.ToString());
        Assert.StartsWith("-For ConsoleText needs -Pattern", error.Exception.Message, StringComparison.Ordinal);
    }
}
