using System.Management.Automation;
using static Xhyve.PowerShell.Hosted.Tests.ErrorAssert;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>DVD drives and AHCI disks through the module (issue 14): Hyper-V's *-VMDvdDrive parameter sets and pipeline
/// binding, the ErrorRecords of a missing ISO, drive or VM (each with its id, category and the object as given), and
/// nothing stored when a command fails or only -WhatIf is asked.</summary>
[Collection(HostedCollection.Name)]
public sealed class DvdDriveTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVm(string name) => module.Run("New-XhyveVM $args[0] -MultibootPath $args[1]", name, _store.Kernel).AssertNoErrors();

    private string Iso(string name = "disc.iso") => _store.Image(name);

    [Fact]
    public void Add_with_a_relative_path_stores_the_absolute_ISO_in_the_lowest_free_slot_and_an_empty_drive_next()
    {
        NewVm("cd");
        string iso = Iso();
        var added = module.Run("Push-Location $args[0]; try { Add-XhyveDvdDrive cd -Path ./disc.iso -PassThru } finally { Pop-Location }", _store.Work).Single("XhyveDvdDrive");
        Assert.Equal(("cd", 2, iso, "ISO", "0:2:0/0"), (added.P<string>("VMName"), added.P<int>("Slot"), added.P<string>("Path"), added.P<string>("DvdMediaType"), added.P<string>("Drive")));
        var empty = module.Run("Add-XhyveDvdDrive -VMName cd -PassThru").Single("XhyveDvdDrive");
        Assert.Equal((3, null, "None"), (empty.P<int>("Slot"), empty.P<string?>("Path"), empty.P<string>("DvdMediaType")));
        var listed = module.Run("Get-XhyveDvdDrive cd");
        listed.AssertNoErrors();
        Assert.Equal([iso, null], listed.Output.Select(o => o.P<string?>("Path")));
        Assert.Contains("\"dvdDrives\"", _store.Definition("cd"), StringComparison.Ordinal);
    }

    [Fact]
    public void Get_takes_wildcards_for_VMName_and_a_pattern_that_matches_nothing_is_no_error()
    {
        NewVm("cd1");
        NewVm("cd2");
        NewVm("other");
        module.Run("Add-XhyveDvdDrive cd1, cd2, other").AssertNoErrors();
        var drives = module.Run("Get-XhyveDvdDrive -VMName CD*");
        drives.AssertNoErrors();
        Assert.Equal(["cd1", "cd2"], drives.Output.Select(d => d.P<string>("VMName")).Order(StringComparer.Ordinal));
        var none = module.Run("Get-XhyveDvdDrive -VMName nothing*");
        none.AssertNoErrors();
        Assert.Empty(none.Output);
    }

    [Fact]
    public void Add_with_a_missing_ISO_is_DvdMediaNotFound_naming_it_as_given_and_nothing_is_stored()
    {
        NewVm("cd");
        string before = _store.Definition("cd");
        var error = module.Run("Add-XhyveDvdDrive cd -Path ./nosuch.iso").SingleError();
        AssertError(error, "DvdMediaNotFound", "AddXhyveDvdDriveCommand", ErrorCategory.ObjectNotFound, "./nosuch.iso");
        Assert.IsType<FileNotFoundException>(error.Exception);
        Assert.Contains("-Path ./nosuch.iso: the ISO image does not exist", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Fact]
    public void An_ISO_path_the_engine_line_cannot_hold_is_InvalidDvdMediaPath_and_nothing_is_stored()
    {
        NewVm("cd");
        string iso = Iso("a,b.iso");
        string before = _store.Definition("cd");
        var error = module.Run("Add-XhyveDvdDrive cd -Path $args[0]", iso).SingleError();
        AssertError(error, "InvalidDvdMediaPath", "AddXhyveDvdDriveCommand", ErrorCategory.InvalidArgument, iso);
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Theory]
    [InlineData("Add-XhyveDvdDrive -VMName nosuch", "AddXhyveDvdDriveCommand")]
    [InlineData("Get-XhyveDvdDrive -VMName nosuch", "GetXhyveDvdDriveCommand")]
    [InlineData("Set-XhyveDvdDrive -VMName nosuch -Slot 2 -Path $null", "SetXhyveDvdDriveCommand")]
    [InlineData("Remove-XhyveDvdDrive -VMName nosuch -Slot 2", "RemoveXhyveDvdDriveCommand")]
    public void Every_DVD_cmdlet_reports_a_missing_VM_as_VMNotFound_without_asking(string script, string cmdletClass)
    {
        NewVm("other");
        var result = module.Run(script);
        AssertError(result.SingleError(), "VMNotFound", cmdletClass, ErrorCategory.ObjectNotFound, "nosuch");
        Assert.Empty(result.Prompts);
    }

    [Theory]
    [InlineData("Set-XhyveDvdDrive -VMName cd -Slot 9 -Path $args[0]", "SetXhyveDvdDriveCommand")]
    [InlineData("Set-XhyveDvdDrive -VMName cd -Slot 9", "SetXhyveDvdDriveCommand")]
    [InlineData("Remove-XhyveDvdDrive -VMName cd -Slot 9 -Confirm:$false", "RemoveXhyveDvdDriveCommand")]
    public void A_slot_without_a_DVD_drive_is_DvdDriveNotFound_with_the_slot_as_target_and_the_VM_is_unchanged(string script, string cmdletClass)
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd -Path $args[0]", Iso()).AssertNoErrors();
        string before = _store.Definition("cd");
        var error = module.Run(script, Iso("other.iso")).SingleError();
        AssertError(error, "DvdDriveNotFound", cmdletClass, ErrorCategory.ObjectNotFound, 9);
        Assert.Contains("VM 'cd' has no DVD drive in slot 9.", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Fact]
    public void Add_in_a_slot_another_device_has_is_SlotInUse_naming_both_with_the_slot_as_target_and_nothing_is_stored()
    {
        NewVm("cd");
        string image = _store.Image();
        module.Run("Add-XhyveDisk cd -Path $args[0] -Slot 4", image).AssertNoErrors();
        string before = _store.Definition("cd");
        var error = module.Run("Add-XhyveDvdDrive cd -Slot 4").SingleError();
        AssertError(error, "SlotInUse", "AddXhyveDvdDriveCommand", ErrorCategory.ResourceExists, 4);
        Assert.Contains($"DVD drive in slot 4 (empty): slot 4 is already used by disk {image}", error.Exception.Message, StringComparison.Ordinal);
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Fact]
    public void Set_with_a_missing_ISO_is_DvdMediaNotFound_and_the_medium_stays()
    {
        NewVm("cd");
        string iso = Iso();
        module.Run("Add-XhyveDvdDrive cd -Path $args[0]", iso).AssertNoErrors();
        var error = module.Run("Set-XhyveDvdDrive cd 2 ./gone.iso").SingleError();
        AssertError(error, "DvdMediaNotFound", "SetXhyveDvdDriveCommand", ErrorCategory.ObjectNotFound, "./gone.iso");
        Assert.Equal(iso, module.Run("Get-XhyveDvdDrive cd").Single("XhyveDvdDrive").P<string>("Path"));
    }

    [Theory]
    [InlineData("Get-XhyveDvdDrive cd | Set-XhyveDvdDrive -PassThru")]
    [InlineData("Get-XhyveDvdDrive cd | Set-XhyveDvdDrive -Path $null -PassThru")]
    [InlineData("Get-XhyveDvdDrive cd | Set-XhyveDvdDrive -Path '' -PassThru")]
    [InlineData("Set-XhyveDvdDrive -VMName cd -ControllerNumber 2 -Path $null -PassThru")]
    public void Set_without_a_path_or_with_an_empty_one_ejects_the_medium(string script)
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd -Path $args[0]", Iso()).AssertNoErrors();
        var drive = module.Run(script).Single("XhyveDvdDrive");
        Assert.Null(drive.P<string?>("Path"));
        Assert.Null(module.Run("Get-XhyveDvdDrive cd").Single("XhyveDvdDrive").P<string?>("Path"));
        Assert.DoesNotContain("disc.iso", _store.Definition("cd"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_drive_object_piped_to_Set_changes_the_medium_of_that_drive_only()
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd; Add-XhyveDvdDrive cd").AssertNoErrors();
        string iso = Iso();
        module.Run("Get-XhyveDvdDrive cd -Slot 3 | Set-XhyveDvdDrive -Path $args[0]", iso).AssertNoErrors();
        var drives = module.Run("Get-XhyveDvdDrive cd");
        Assert.Equal([(2, null), (3, iso)], drives.Output.Select(d => (d.P<int>("Slot"), d.P<string?>("Path"))));
    }

    [Fact]
    public void A_VM_object_pipes_into_Add_and_a_drive_object_into_Remove()
    {
        var added = module.Run("New-XhyveVM cd -MultibootPath $args[0] | Add-XhyveDvdDrive -PassThru", _store.Kernel).Single("XhyveDvdDrive");
        Assert.Equal("cd", added.P<string>("VMName"));
        var removed = module.Run("Get-XhyveDvdDrive cd | Remove-XhyveDvdDrive -Confirm:$false -PassThru").Single("XhyveDvdDrive");
        Assert.Equal(2, removed.P<int>("Slot"));
        Assert.Empty(module.Run("Get-XhyveDvdDrive cd").Output);
        Assert.DoesNotContain("dvdDrives", _store.Definition("cd"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_drive_object_whose_drive_is_gone_is_DvdDriveNotFound_with_the_object_as_target()
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd").AssertNoErrors();
        var result = module.Run("$d = Get-XhyveDvdDrive cd; Remove-XhyveDvdDrive -DvdDrive $d -Confirm:$false; $d | Remove-XhyveDvdDrive -Confirm:$false; $d");
        var error = Assert.Single(result.Errors);
        Assert.Equal("DvdDriveNotFound,Xhyve.PowerShell.Cmdlets.RemoveXhyveDvdDriveCommand", error.FullyQualifiedErrorId);
        Assert.Same(result.Output.Single().BaseObject, error.TargetObject);
    }

    [Theory]
    [InlineData("Add-XhyveDvdDrive cd -Path $args[0] -WhatIf", "Add DVD drive with {0}")]
    [InlineData("Set-XhyveDvdDrive cd -Slot 2 -Path $args[0] -WhatIf", "Insert {0} into the DVD drive in slot 2")]
    [InlineData("Set-XhyveDvdDrive cd -Slot 2 -WhatIf", "Eject the medium of the DVD drive in slot 2")]
    [InlineData("Remove-XhyveDvdDrive cd -Slot 2 -WhatIf", "Remove the DVD drive in slot 2")]
    public void WhatIf_says_what_it_would_do_and_changes_nothing(string script, string operation)
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd").AssertNoErrors();
        string iso = Iso(), before = _store.Definition("cd");
        var result = module.Run(script, iso);
        result.AssertNoErrors();
        Assert.Equal($"What if: Performing the operation \"{string.Format(operation, iso)}\" on target \"cd\".", Assert.Single(result.HostLines));
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Fact]
    public void Remove_asks_for_confirmation_and_No_keeps_the_drive()
    {
        NewVm("cd");
        module.Run("Add-XhyveDvdDrive cd").AssertNoErrors();
        string before = _store.Definition("cd");
        module.Host.Answer("No");
        var result = module.Run("Remove-XhyveDvdDrive cd 2");
        result.AssertNoErrors();
        Assert.Single(result.Prompts);
        Assert.Equal(before, _store.Definition("cd"));
    }

    [Fact]
    public void Add_XhyveDisk_ControllerType_AHCI_is_stored_and_shown_and_VirtIO_stays_the_default()
    {
        NewVm("sata");
        var ahci = module.Run("Add-XhyveDisk sata -Path $args[0] -ControllerType AHCI -PassThru", _store.Image("a.img")).Single("XhyveDisk");
        Assert.Equal("AHCI", ahci.P<object>("ControllerType").ToString());
        module.Run("Add-XhyveDisk sata -Path $args[0]", _store.Image("v.img")).AssertNoErrors();
        var disks = module.Run("Get-XhyveDisk sata");
        Assert.Equal(["AHCI", "VirtIO"], disks.Output.Select(d => d.P<object>("ControllerType").ToString()));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(_store.Definition("sata"), "\"controllerType\": \"AHCI\""));
    }

    [Fact]
    public void Add_XhyveDisk_with_an_unknown_ControllerType_is_a_binding_error_and_nothing_is_stored()
    {
        NewVm("sata");
        string before = _store.Definition("sata");
        var result = module.Command("Add-XhyveDisk", new Dictionary<string, object?> { ["VMName"] = "sata", ["Path"] = _store.Image(), ["ControllerType"] = "SCSI" });
        Assert.Equal("CannotConvertArgumentNoMessage,Xhyve.PowerShell.Cmdlets.AddXhyveDiskCommand", result.ThrownRecord().FullyQualifiedErrorId);
        Assert.Equal(before, _store.Definition("sata"));
    }

    [Fact]
    public void ConvertFrom_XhyveCommandLine_Save_makes_the_ISO_absolute_and_refuses_a_missing_one()
    {
        string iso = Iso();
        _store.Image();
        var vm = module.Run("Push-Location $args[0]; try { ConvertFrom-XhyveCommandLine '-s 3,ahci-cd,disc.iso -s 4,ahci-cd -s 5,ahci-hd,d.img -f kexec,kernel.elf' -Name conv -Save } finally { Pop-Location }", _store.Work).Single("XhyveVM");
        var drives = vm.P<System.Collections.IEnumerable>("DvdDrives").Cast<object>().Select(d => PSObject.AsPSObject(d)).ToList();
        Assert.Equal([iso, null], drives.Select(d => d.P<string?>("Path")));
        var missing = module.Run("Push-Location $args[0]; try { ConvertFrom-XhyveCommandLine '-s 3,ahci-cd,gone.iso -f kexec,kernel.elf' -Name conv2 -Save } finally { Pop-Location }", _store.Work).SingleError();
        AssertError(missing, "FileNotFound", "ConvertFromXhyveCommandLineCommand", ErrorCategory.ObjectNotFound, "gone.iso");
        Assert.Contains("-s 3,ahci-cd,gone.iso", missing.Exception.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "conv2")));
    }
}
