using System.Management.Automation;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>How PowerShell binds the cmdlets' parameters: from the pipeline (by value, by property name), through
/// aliases, into the right parameter set; and what it refuses before a cmdlet runs.</summary>
[Collection(HostedCollection.Name)]
public sealed class ParameterBindingTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVm(string name, string extra = "") =>
        module.Run($"New-XhyveVM $args[0] -MultibootPath $args[1] {extra}", name, _store.Kernel).AssertNoErrors();

    private static string[] Names(HostedResult r)
    {
        r.AssertNoErrors();
        return [.. r.Output.Select(o => (string)o.Properties["Name"].Value)];
    }

    private int Cpus(string vm) => (int)module.Run("(Get-XhyveVM $args[0]).ProcessorCount", vm).Output.Single().BaseObject;

    // ---- pipeline by value ----

    [Fact]
    public void Strings_piped_to_Get_XhyveVM_bind_to_Name()
    {
        NewVm("alpha");
        NewVm("beta");
        NewVm("gamma");
        Assert.Equal(["gamma", "alpha"], Names(module.Run("'gamma', 'alpha' | Get-XhyveVM")));
    }

    [Fact]
    public void VM_objects_piped_to_Set_XhyveVM_change_each_VM()
    {
        NewVm("one");
        NewVm("two");
        module.Run("Get-XhyveVM | Set-XhyveVM -ProcessorCount 2").AssertNoErrors();
        Assert.Equal(2, Cpus("one"));
        Assert.Equal(2, Cpus("two"));
    }

    [Fact]
    public void A_VM_object_from_New_XhyveVM_pipes_into_the_device_cmdlets()
    {
        string image = Path.Combine(_store.Work, "d.img");
        File.WriteAllBytes(image, new byte[4096]);
        var disk = module.Run("New-XhyveVM piped -MultibootPath $args[0] | Add-XhyveDisk -Path $args[1] -PassThru", _store.Kernel, image);
        var added = disk.Single("XhyveDisk");
        Assert.Equal(("piped", image, 2), (added.P<string>("VMName"), added.P<string>("Path"), added.P<int>("Slot")));
    }

    // ---- pipeline by property name ----

    [Fact]
    public void A_disk_object_names_its_VM_through_VMName_for_the_VM_action_cmdlets()
    {
        NewVm("withdisk");
        NewVm("other");
        string image = Path.Combine(_store.Work, "d.img");
        File.WriteAllBytes(image, new byte[4096]);
        module.Run("Add-XhyveDisk withdisk -Path $args[0]", image).AssertNoErrors();
        // XhyveDisk has VMName and Path, no Name: -Name binds through its alias VMName.
        module.Run("Get-XhyveDisk withdisk | Set-XhyveVM -ProcessorCount 3").AssertNoErrors();
        Assert.Equal(3, Cpus("withdisk"));
        Assert.Equal(1, Cpus("other"));
    }

    [Fact]
    public void A_network_adapter_object_names_its_VM_through_VMName_for_the_device_cmdlets()
    {
        NewVm("net");
        string image = Path.Combine(_store.Work, "d.img");
        File.WriteAllBytes(image, new byte[4096]);
        module.Run("Add-XhyveNetworkAdapter net; Add-XhyveDisk net -Path $args[0]", image).AssertNoErrors();
        var disks = module.Run("Get-XhyveNetworkAdapter net | Get-XhyveDisk");
        Assert.Equal("net", disks.Single("XhyveDisk").P<string>("VMName"));
    }

    [Fact]
    public void A_pscustomobject_with_Name_binds_to_Get_XhyveVM_and_New_XhyveVM()
    {
        NewVm("existing");
        Assert.Equal(["existing"], Names(module.Run("[pscustomobject]@{ Name = 'existing' } | Get-XhyveVM")));
        var created = module.Run("[pscustomobject]@{ Name = 'fromobject' } | New-XhyveVM -MultibootPath $args[0]", _store.Kernel);
        Assert.Equal("fromobject", created.Single("XhyveVM").P<string>("Name"));
        Assert.True(File.Exists(Path.Combine(_store.VmsFolder, "fromobject", "vm.json")));
    }

    [Fact]
    public void A_pscustomobject_with_VMName_binds_to_Name_of_a_VM_action_cmdlet()
    {
        NewVm("byalias");
        module.Run("[pscustomobject]@{ VMName = 'byalias' } | Set-XhyveVM -ProcessorCount 4").AssertNoErrors();
        Assert.Equal(4, Cpus("byalias"));
    }

    // ---- aliases ----

    [Theory]
    [InlineData("Set-XhyveVM -VMName aliased -ProcessorCount 5")]
    [InlineData("Set-XhyveVM -vmname aliased -ProcessorCount 5")]   // parameter names and aliases ignore case
    public void VMName_is_an_alias_of_Name_on_the_VM_action_cmdlets(string script)
    {
        NewVm("aliased");
        module.Run(script).AssertNoErrors();
        Assert.Equal(5, Cpus("aliased"));
    }

    [Fact]
    public void Remove_XhyveVM_takes_VMName()
    {
        NewVm("gone");
        module.Run("Remove-XhyveVM -VMName gone -Confirm:$false").AssertNoErrors();
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "gone")));
    }

    [Fact]
    public void TapDevice_is_an_alias_of_TapName()
    {
        NewVm("tap");
        var adapter = module.Run("Add-XhyveNetworkAdapter tap -TapDevice tap7 -PassThru").Single("XhyveNetworkAdapter");
        Assert.Equal("tap7", adapter.P<string>("TapName"));
    }

    // ---- parameter sets ----

    [Fact]
    public void Get_XhyveVM_by_Id_finds_the_VM_and_Name_with_Id_is_ambiguous()
    {
        NewVm("byid");
        NewVm("notthis");
        var id = module.Run("(Get-XhyveVM byid).Id").Output.Single().BaseObject;
        Assert.Equal(["byid"], Names(module.Run("Get-XhyveVM -Id $args[0]", id)));
        var error = module.Run("Get-XhyveVM -Name byid -Id $args[0]", id).SingleError();
        AssertBindingError(error, "AmbiguousParameterSet", "GetXhyveVMCommand");
    }

    [Fact]
    public void Set_XhyveVM_with_both_Name_and_VM_is_ambiguous_and_changes_nothing()
    {
        NewVm("both");
        var error = module.Run("Set-XhyveVM -Name both -VM (Get-XhyveVM both) -ProcessorCount 6").SingleError();
        AssertBindingError(error, "AmbiguousParameterSet", "SetXhyveVMCommand");
        Assert.Equal(1, Cpus("both"));
    }

    [Fact]
    public void New_XhyveVM_with_KernelPath_and_MultibootPath_is_ambiguous_and_stores_nothing()
    {
        var error = module.Run("New-XhyveVM twoboots -KernelPath $args[0] -MultibootPath $args[0]", _store.Kernel).SingleError();
        AssertBindingError(error, "AmbiguousParameterSet", "NewXhyveVMCommand");
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void New_XhyveVM_with_an_initrd_for_a_multiboot_kernel_is_ambiguous()
    {
        var error = module.Run("New-XhyveVM mixed -MultibootPath $args[0] -InitrdPath $args[0]", _store.Kernel).SingleError();
        AssertBindingError(error, "AmbiguousParameterSet", "NewXhyveVMCommand");
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void New_XhyveVM_without_a_kernel_misses_KernelPath_of_its_default_set()
    {
        var error = module.Run("New-XhyveVM nokernel").SingleError();
        AssertBindingError(error, "MissingMandatoryParameter", "NewXhyveVMCommand");
        Assert.EndsWith("KernelPath.", error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void New_XhyveVM_with_modules_but_no_multiboot_kernel_misses_MultibootPath()
    {
        var error = module.Run("New-XhyveVM nokernel -MultibootModule $args[0]", _store.Kernel).SingleError();
        AssertBindingError(error, "MissingMandatoryParameter", "NewXhyveVMCommand");
        Assert.EndsWith("MultibootPath.", error.Exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void New_XhyveVM_picks_the_Multiboot_set_from_MultibootPath_alone()
    {
        var vm = module.Run("New-XhyveVM mb -MultibootPath $args[0] -MultibootModule $args[0]", _store.Kernel).Single("XhyveVM");
        Assert.Equal(_store.Kernel, vm.P<string>("MultibootPath"));
        Assert.Null(vm.Properties["KernelPath"].Value);
        var modules = module.Run("(Get-XhyveVM mb).MultibootModules.Path").Output;
        Assert.Equal(_store.Kernel, Assert.Single(modules).BaseObject);
    }

    [Fact]
    public void Remove_XhyveDisk_by_object_and_by_VMName_and_Path_are_separate_sets()
    {
        NewVm("disks");
        string image = Path.Combine(_store.Work, "d.img");
        File.WriteAllBytes(image, new byte[4096]);
        module.Run("Add-XhyveDisk disks -Path $args[0]", image).AssertNoErrors();
        var error = module.Run("Remove-XhyveDisk -Disk (Get-XhyveDisk disks) -VMName disks -Path $args[0] -Confirm:$false", image).SingleError();
        AssertBindingError(error, "AmbiguousParameterSet", "RemoveXhyveDiskCommand");
        module.Run("Remove-XhyveDisk disks $args[0] -Confirm:$false", image).AssertNoErrors();   // positional VMName, Path
        Assert.Empty(module.Run("Get-XhyveDisk disks").Output);
    }

    // ---- mandatory parameters and validation, through the host API ----

    [Fact]
    public void A_host_invoking_Add_XhyveDisk_without_Path_gets_a_ParameterBindingException()
    {
        NewVm("nopath");
        var result = module.Command("Add-XhyveDisk", new Dictionary<string, object?> { ["VMName"] = "nopath" });
        var thrown = Assert.IsType<ParameterBindingException>(result.Thrown);
        Assert.Equal("MissingMandatoryParameter,Xhyve.PowerShell.Cmdlets.AddXhyveDiskCommand", thrown.ErrorRecord.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, thrown.ErrorRecord.CategoryInfo.Category);
        Assert.Equal("Path", thrown.ParameterName.Trim());   // PowerShell lists missing parameters each after a space
    }

    [Fact]
    public void A_host_invoking_Get_XhyveVM_with_an_unknown_parameter_gets_NamedParameterNotFound()
    {
        // Not -VMId: Get-XhyveVM has that one now (as an alias of -Id, as Hyper-V's Get-VM).
        var result = module.Command("Get-XhyveVM", new Dictionary<string, object?> { ["VMGuid"] = Guid.NewGuid() });
        var thrown = Assert.IsType<ParameterBindingException>(result.Thrown);
        Assert.Equal("NamedParameterNotFound,Xhyve.PowerShell.Cmdlets.GetXhyveVMCommand", thrown.ErrorRecord.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, thrown.ErrorRecord.CategoryInfo.Category);
        Assert.Equal("VMGuid", thrown.ParameterName);
    }

    [Theory]
    [InlineData("New-XhyveVM v -MultibootPath $args[0] -ProcessorCount 0", "ProcessorCount")]
    [InlineData("New-XhyveVM v -MultibootPath $args[0] -MemoryStartupBytes 1MB", "MemoryStartupBytes")]
    [InlineData("New-XhyveVM '' -MultibootPath $args[0]", "Name")]
    [InlineData("New-XhyveDiskImage $args[0] 8MB -SectorSize 1000", "SectorSize")]
    [InlineData("New-XhyveDiskImage $args[0] 8MB -SectorSize 131072", "SectorSize")]
    public void Values_outside_a_parameters_validation_are_refused_before_the_cmdlet_runs(string script, string parameter)
    {
        var error = module.Run(script, _store.Kernel + ".img").SingleError();
        Assert.Equal("ParameterArgumentValidationError", error.FullyQualifiedErrorId.Split(',')[0]);
        Assert.Equal(ErrorCategory.InvalidData, error.CategoryInfo.Category);
        Assert.Equal(parameter, ((ParameterBindingException)error.Exception).ParameterName);
        Assert.Empty(_store.Files());
        Assert.False(File.Exists(_store.Kernel + ".img"));
    }

    [Fact]
    public void SectorSize_takes_any_power_of_two_the_engine_takes_and_the_image_records_it()
    {
        string image = Path.Combine(_store.Work, "s2048.img");
        module.Run("New-XhyveDiskImage $args[0] 8MB -SectorSize 2048 | Out-Null", image);
        Assert.Contains("\"sectorSize\":2048", File.ReadAllText(image + ".desc").Replace(" ", ""));
    }

    private static void AssertBindingError(ErrorRecord error, string id, string cmdletClass)
    {
        Assert.Equal($"{id},Xhyve.PowerShell.Cmdlets.{cmdletClass}", error.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
        Assert.IsType<ParameterBindingException>(error.Exception);
    }
}
