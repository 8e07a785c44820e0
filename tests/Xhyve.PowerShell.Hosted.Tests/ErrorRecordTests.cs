using System.Management.Automation;
using static Xhyve.PowerShell.Hosted.Tests.ErrorAssert;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>The cmdlets' errors as a script sees them: FullyQualifiedErrorId (id and cmdlet), category and target
/// object, for the main ways input goes wrong; and nothing written to the store when it does.</summary>
[Collection(HostedCollection.Name)]
public sealed class ErrorRecordTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVm(string name) => module.Run("New-XhyveVM $args[0] -MultibootPath $args[1]", name, _store.Kernel).AssertNoErrors();

    [Fact]
    public void A_missing_VM_is_VMNotFound_naming_it_in_the_message_and_the_target()
    {
        var error = module.Run("Get-XhyveVM nosuch").SingleError();
        AssertError(error, "VMNotFound", "GetXhyveVMCommand", ErrorCategory.ObjectNotFound, "nosuch");
        Assert.IsType<ItemNotFoundException>(error.Exception);
        Assert.Contains("'nosuch'", error.Exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_Id_is_VMNotFound_with_the_Guid_as_target()
    {
        NewVm("some");
        var id = Guid.NewGuid();
        var error = module.Run("Get-XhyveVM -Id $args[0]", id).SingleError();
        AssertError(error, "VMNotFound", "GetXhyveVMCommand", ErrorCategory.ObjectNotFound, id);
    }

    [Theory]
    [InlineData("Set-XhyveVM nosuch -ProcessorCount 2", "SetXhyveVMCommand")]
    [InlineData("Remove-XhyveVM nosuch -Confirm:$false", "RemoveXhyveVMCommand")]
    [InlineData("Start-XhyveVM nosuch", "StartXhyveVMCommand")]
    [InlineData("Stop-XhyveVM nosuch", "StopXhyveVMCommand")]
    [InlineData("Get-XhyveDisk nosuch", "GetXhyveDiskCommand")]
    [InlineData("Add-XhyveNetworkAdapter nosuch", "AddXhyveNetworkAdapterCommand")]
    public void Every_VM_cmdlet_reports_a_missing_VM_as_VMNotFound(string script, string cmdletClass)
    {
        var error = module.Run(script).SingleError();
        AssertError(error, "VMNotFound", cmdletClass, ErrorCategory.ObjectNotFound, "nosuch");
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void A_second_VM_with_a_name_in_use_is_VMExists_and_the_first_is_untouched()
    {
        NewVm("taken");
        string before = _store.Definition("taken");
        var error = module.Run("New-XhyveVM taken -KernelPath $args[0] -ProcessorCount 4", _store.Kernel).SingleError();
        AssertError(error, "VMExists", "NewXhyveVMCommand", ErrorCategory.ResourceExists, "taken");
        Assert.Equal(before, _store.Definition("taken"));
    }

    [Theory]
    [InlineData("New-XhyveVM k -KernelPath /nonexistent/vmlinuz", "/nonexistent/vmlinuz", "KernelPath")]
    [InlineData("New-XhyveVM k -MultibootPath missing.elf", "missing.elf", "MultibootPath")]
    [InlineData("New-XhyveVM k -KernelPath $args[0] -InitrdPath /nonexistent/initrd", "/nonexistent/initrd", "InitrdPath")]
    [InlineData("New-XhyveVM k -MultibootPath $args[0] -MultibootModule '/nonexistent/mod args'", "/nonexistent/mod", "MultibootModule")]
    public void A_missing_boot_file_is_FileNotFound_naming_the_parameter_and_path_and_stores_nothing(string script, string target, string parameter)
    {
        var error = module.Run(script, _store.Kernel).SingleError();
        AssertError(error, "FileNotFound", "NewXhyveVMCommand", ErrorCategory.ObjectNotFound, target);
        Assert.IsType<FileNotFoundException>(error.Exception);
        Assert.StartsWith($"-{parameter} {target}: the file does not exist", error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void A_relative_kernel_path_is_resolved_against_the_current_location_not_the_process_directory()
    {
        var vm = module.Run("Push-Location $args[0]; try { New-XhyveVM rel -MultibootPath kernel.elf } finally { Pop-Location }", _store.Work).Single("XhyveVM");
        Assert.Equal(_store.Kernel, vm.P<string>("MultibootPath"));
    }

    [Theory]
    [InlineData("New-XhyveVM 'bad name' -MultibootPath $args[0]", "bad name", "Name 'bad name'")]
    [InlineData("New-XhyveVM odd -MultibootPath $args[0] -MemoryStartupBytes 3000000", "odd", "MemoryStartupBytes 3000000: must be a multiple of 4 KB")]
    public void A_definition_the_store_would_refuse_is_InvalidVMDefinition_and_stores_nothing(string script, string target, string message)
    {
        var error = module.Run(script, _store.Kernel).SingleError();
        AssertError(error, "InvalidVMDefinition", "NewXhyveVMCommand", ErrorCategory.InvalidArgument, target);
        Assert.StartsWith(message, error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void Extra_arguments_that_override_the_VM_are_InvalidVMDefinition_and_the_definition_is_unchanged()
    {
        NewVm("owned");
        string before = _store.Definition("owned");
        var error = module.Run("Set-XhyveVM owned -ExtraArguments '-m', '1G'").SingleError();
        AssertError(error, "InvalidVMDefinition", "SetXhyveVMCommand", ErrorCategory.InvalidArgument, "owned");
        Assert.Contains("ExtraArguments '-m 1G'", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("owned"));
    }

    [Fact]
    public void Unknown_disk_options_are_InvalidDiskOptions_and_no_disk_is_added()
    {
        NewVm("opts");
        string before = _store.Definition("opts");
        var error = module.Run("Add-XhyveDisk opts -Path $args[0] -Options bogus", _store.Image()).SingleError();
        Assert.Equal("InvalidDiskOptions,Xhyve.PowerShell.Cmdlets.AddXhyveDiskCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.Equal("bogus", error.TargetObject);   // the option that is wrong, not the whole -Options
        Assert.StartsWith("-Options: bogus: unknown block option", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("opts"));
    }

    [Fact]
    public void A_missing_disk_image_is_DiskImageNotFound_unless_a_size_lets_the_engine_create_it()
    {
        NewVm("img");
        string missing = Path.Combine(_store.Work, "missing.img");
        var error = module.Run("Add-XhyveDisk img -Path $args[0]", missing).SingleError();
        AssertError(error, "DiskImageNotFound", "AddXhyveDiskCommand", ErrorCategory.ObjectNotFound, missing);
        Assert.Empty(module.Run("Get-XhyveDisk img").Output);
        module.Run("Add-XhyveDisk img -Path $args[0] -Options size=8M", missing).AssertNoErrors();
        Assert.Single(module.Run("Get-XhyveDisk img").Output);
    }

    [Fact]
    public void A_disk_size_that_is_not_whole_KB_is_InvalidDiskImageSize_and_creates_no_file()
    {
        string image = Path.Combine(_store.Work, "odd.img");
        var error = module.Run("New-XhyveDiskImage $args[0] -SizeBytes 1000", image).SingleError();
        AssertError(error, "InvalidDiskImageSize", "NewXhyveDiskImageCommand", ErrorCategory.InvalidArgument, 1000L);
        Assert.False(File.Exists(image));
    }

    [Fact]
    public void An_existing_image_is_not_overwritten_DiskImageNotCreated()
    {
        string image = _store.Image("keep.img");
        File.WriteAllBytes(image, [1, 2, 3]);
        var error = module.Run("New-XhyveDiskImage $args[0] -SizeBytes 1MB", image).SingleError();
        AssertError(error, "DiskImageNotCreated", "NewXhyveDiskImageCommand", ErrorCategory.WriteError, image);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(image));
    }

    [Fact]
    public void A_bad_MAC_address_is_InvalidMacAddress_with_the_value_as_target()
    {
        NewVm("mac");
        var error = module.Run("Add-XhyveNetworkAdapter mac -MacAddress zz").SingleError();
        AssertError(error, "InvalidMacAddress", "AddXhyveNetworkAdapterCommand", ErrorCategory.InvalidArgument, "zz");
        Assert.Empty(module.Run("Get-XhyveNetworkAdapter mac").Output);
    }

    [Fact]
    public void A_corrupt_definition_is_VMStoreError_naming_the_file_and_other_VMs_still_list()
    {
        NewVm("broken");
        NewVm("fine");
        File.WriteAllText(Path.Combine(_store.VmsFolder, "broken", "vm.json"), "{ broken");
        var result = module.Run("Get-XhyveVM");
        var error = result.SingleError();
        AssertError(error, "VMStoreError", "GetXhyveVMCommand", ErrorCategory.InvalidOperation, "broken");
        Assert.Contains(Path.Combine(_store.VmsFolder, "broken", "vm.json"), error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(["fine"], result.Output.Select(o => o.P<string>("Name")));
    }

    [Fact]
    public void Waiting_for_Running_on_a_VM_that_is_off_fails_with_VMNotRunning_naming_the_cmdlet_to_use()
    {
        NewVm("idle");
        // Nothing is starting it, so Running cannot come: the error comes at once, not after -TimeoutSec.
        var error = module.Run("Wait-XhyveVM idle -TimeoutSec 600").SingleError();
        AssertError(error, "VMNotRunning", "WaitXhyveVMCommand", ErrorCategory.InvalidOperation, "idle");
        Assert.EndsWith("start it with Start-XhyveVM.", error.Exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_wait_that_ends_before_its_first_report_writes_no_progress_record()
    {
        NewVm("off");
        // Already there: no progress was shown, so there is none to complete (a completion alone costs the host ~0.6 ms).
        // The script's own record shows that the progress stream is collected here.
        var result = module.Run("Write-Progress -Activity probe -Status shown; Wait-XhyveVM off -For Off; Wait-XhyveVM off -TimeoutSec 600");
        Assert.Equal("VMNotRunning", result.SingleError().FullyQualifiedErrorId.Split(',')[0]);
        Assert.Equal(["probe"], result.Progress.Select(p => p.Activity));
    }

    [Fact]
    public void ConsoleText_without_a_Pattern_stops_Wait_XhyveVM_with_PatternMissing()
    {
        NewVm("nopattern");
        var result = module.Command("Wait-XhyveVM", new Dictionary<string, object?> { ["Name"] = "nopattern", ["For"] = "ConsoleText" });
        var error = result.ThrownRecord();
        Assert.Equal("PatternMissing,Xhyve.PowerShell.Cmdlets.WaitXhyveVMCommand", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
    }

    [Fact]
    public void An_error_on_one_VM_does_not_stop_the_others_in_the_pipeline()
    {
        NewVm("first");
        NewVm("last");
        var result = module.Run("'first', 'missing', 'last' | Set-XhyveVM -ProcessorCount 2 -PassThru");
        var error = result.SingleError();
        AssertError(error, "VMNotFound", "SetXhyveVMCommand", ErrorCategory.ObjectNotFound, "missing");
        Assert.Equal(["first", "last"], result.Output.Select(o => o.P<string>("Name")));
    }
}
