using System.Management.Automation;
using static Xhyve.PowerShell.Hosted.Tests.ErrorAssert;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>VMs that boot from a boot ROM (Hyper-V's generations): a UEFI VM's variable store is copied from its template
/// into the VM's own folder, one copy per VM, removed with the VM; missing files are errors naming them; -WhatIf
/// creates nothing.</summary>
[Collection(HostedCollection.Name)]
public sealed class BootRomVmTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    /// <summary>A stand-in ROM and a variable store template with recognisable contents (nothing boots them here).</summary>
    private (string Rom, string Template) Firmware()
    {
        string rom = Path.Combine(_store.Work, "CODE.fd"), template = Path.Combine(_store.Work, "VARS.fd");
        File.WriteAllBytes(rom, new byte[64 * 1024]);
        File.WriteAllBytes(template, Enumerable.Range(0, 8192).Select(i => (byte)(i * 13)).ToArray());
        return (rom, template);
    }

    private PSObject NewUefiVm(string name)
    {
        var (rom, template) = Firmware();
        var result = module.Run("New-XhyveVM $args[0] -BootRomPath $args[1] -UefiVariablesTemplatePath $args[2]", name, rom, template);
        result.AssertNoErrors();
        return Assert.Single(result.Output);
    }

    [Fact]
    public void A_UEFI_VM_gets_a_copy_of_the_template_in_its_own_folder()
    {
        var vm = NewUefiVm("uefi");
        var (_, template) = Firmware();
        string vars = vm.P<string>("UefiVariablesPath");
        Assert.Equal(Path.Combine(_store.VmsFolder, "uefi", "uefi-vars.fd"), vars);
        Assert.Equal(File.ReadAllBytes(template), File.ReadAllBytes(vars));
        Assert.Equal(2, vm.P<int>("Generation"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(vars));
        Assert.Contains("\"uefiVariablesTemplatePath\"", _store.Definition("uefi"), StringComparison.Ordinal);
    }

    [Fact]
    public void Two_UEFI_VMs_get_separate_copies()
    {
        string a = NewUefiVm("one").P<string>("UefiVariablesPath"), b = NewUefiVm("two").P<string>("UefiVariablesPath");
        Assert.NotEqual(a, b);
        File.WriteAllBytes(a, new byte[8192]);   // what the first guest's firmware writes stays in the first VM
        Assert.NotEqual(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public void Remove_XhyveVM_removes_the_VMs_variable_store()
    {
        string vars = NewUefiVm("gone").P<string>("UefiVariablesPath");
        module.Run("Remove-XhyveVM gone -Force").AssertNoErrors();
        Assert.False(File.Exists(vars));
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "gone")));
    }

    [Fact]
    public void A_missing_template_is_FileNotFound_naming_it_and_nothing_is_created()
    {
        var (rom, _) = Firmware();
        string missing = Path.Combine(_store.Work, "NO_VARS.fd");
        var error = module.Run("New-XhyveVM absent -BootRomPath $args[0] -UefiVariablesTemplatePath $args[1]", rom, missing).SingleError();
        AssertError(error, "FileNotFound", "NewXhyveVMCommand", ErrorCategory.ObjectNotFound, missing);
        Assert.Contains(missing, error.Exception.Message, StringComparison.Ordinal);
        Assert.Contains("-UefiVariablesTemplatePath", error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void A_missing_boot_ROM_is_FileNotFound_naming_it_and_nothing_is_created()
    {
        string missing = Path.Combine(_store.Work, "bios.bin");
        var error = module.Run("New-XhyveVM absent -BootRomPath $args[0]", missing).SingleError();
        AssertError(error, "FileNotFound", "NewXhyveVMCommand", ErrorCategory.ObjectNotFound, missing);
        Assert.Contains(missing, error.Exception.Message, StringComparison.Ordinal);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void A_template_that_is_not_a_flash_image_is_refused_naming_it_and_nothing_is_created()
    {
        var (rom, _) = Firmware();
        string odd = Path.Combine(_store.Work, "odd.fd");
        File.WriteAllBytes(odd, new byte[1000]);
        var error = module.Run("New-XhyveVM odd -BootRomPath $args[0] -UefiVariablesTemplatePath $args[1]", rom, odd).SingleError();
        Assert.Contains(odd, error.Exception.Message, StringComparison.Ordinal);
        Assert.Contains("not a flash image", error.Exception.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "odd")));
    }

    [Fact]
    public void New_XhyveVM_WhatIf_creates_no_VM_and_no_copy()
    {
        var (rom, template) = Firmware();
        var result = module.Run("New-XhyveVM planned -BootRomPath $args[0] -UefiVariablesTemplatePath $args[1] -WhatIf", rom, template);
        result.AssertNoErrors();
        Assert.Empty(result.Output);
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void A_BIOS_VM_has_a_boot_ROM_and_no_variable_store()
    {
        var (rom, _) = Firmware();
        var vm = Assert.Single(module.Run("New-XhyveVM bios -BootRomPath $args[0]", rom).Output);
        Assert.Equal(1, vm.P<int>("Generation"));
        Assert.Equal(rom, vm.P<string>("BootRomPath"));
        Assert.Null(vm.Properties["UefiVariablesPath"].Value);
        Assert.DoesNotContain("vms/bios/uefi-vars.fd", _store.Files());
        Assert.Contains("vms/bios/vm.json", _store.Files());
    }

    [Fact]
    public void Set_XhyveVM_turns_a_kernel_VM_into_a_UEFI_VM_and_back_copying_and_removing_the_store()
    {
        module.Run("New-XhyveVM k -KernelPath $args[0] -KernelCommandLine console=ttyS0", _store.Kernel).AssertNoErrors();
        var (rom, template) = Firmware();
        var vm = Assert.Single(module.Run("Set-XhyveVM k -BootRomPath $args[0] -UefiVariablesTemplatePath $args[1] -PassThru", rom, template).Output);
        string vars = vm.P<string>("UefiVariablesPath");
        Assert.Equal(File.ReadAllBytes(template), File.ReadAllBytes(vars));
        Assert.Null(vm.Properties["KernelPath"].Value);
        Assert.Null(vm.Properties["KernelCommandLine"].Value);

        // Another setting leaves the guest's variables alone.
        File.WriteAllBytes(vars, new byte[8192]);
        module.Run("Set-XhyveVM k -ProcessorCount 2").AssertNoErrors();
        Assert.Equal(new byte[8192], File.ReadAllBytes(vars));

        module.Run("Set-XhyveVM k -KernelPath $args[0]", _store.Kernel).AssertNoErrors();
        Assert.False(File.Exists(vars));
    }

    [Fact]
    public void Generation_and_an_explicit_ROM_together_are_refused()
    {
        var (rom, _) = Firmware();
        module.Run("New-XhyveVM k -KernelPath $args[0]", _store.Kernel).AssertNoErrors();
        var error = module.Run("Set-XhyveVM k -Generation 2 -BootRomPath $args[0]", rom).SingleError();
        Assert.Equal("ConflictingFirmware,Xhyve.PowerShell.Cmdlets.SetXhyveVMCommand", error.FullyQualifiedErrorId);
    }

    [SkippableFact]
    public void Generation_2_uses_Debians_OVMF_and_copies_its_template()
    {
        Skip.IfNot(File.Exists("/usr/share/OVMF/OVMF_CODE_4M.fd") && File.Exists("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            "Debian's ovmf package is not installed (/usr/share/OVMF/OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)");
        var vm = Assert.Single(module.Run("New-XhyveVM g2 -Generation 2").Output);
        Assert.Equal("/usr/share/OVMF/OVMF_CODE_4M.fd", vm.P<string>("BootRomPath"));
        Assert.Equal(File.ReadAllBytes("/usr/share/OVMF/OVMF_VARS_4M.fd"), File.ReadAllBytes(vm.P<string>("UefiVariablesPath")));
    }

    [Fact]
    public void ConvertFrom_XhyveCommandLine_maps_l_bootrom_and_Save_copies_the_lines_store()
    {
        var (rom, template) = Firmware();
        var result = module.Run("ConvertFrom-XhyveCommandLine -CommandLine $args[0] -Name conv -Save",
            $"xhyve -A -s 0,hostbridge,model=q35 -s 31,lpc -l com1,stdio -l bootrom,{rom},{template}");
        result.AssertNoErrors();
        var vm = Assert.Single(result.Output);
        Assert.Equal(rom, vm.P<string>("BootRomPath"));
        Assert.Equal(2, vm.P<int>("Generation"));
        Assert.Equal(File.ReadAllBytes(template), File.ReadAllBytes(Path.Combine(_store.VmsFolder, "conv", "uefi-vars.fd")));
    }
}
