using Xhyve.Engine.Tests.Linux;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Firmware;

/// <summary>
/// End to end: Debian's OVMF (the 4 MiB build) boots from -l bootrom,CODE,VARS on the Q35 chipset to its UEFI shell
/// (it finds no boot device), writing its variables through the CFI flash into the VM's own copy of OVMF_VARS_4M.fd,
/// and boots again from the store it wrote. OVMF needs guest code on VT-x or AMD-V: under software nesting (kvm_pvm) it
/// stops early, in QEMU too, so there this test is skipped with the reason.
/// </summary>
public sealed class OvmfBootTests : IDisposable
{
    private const string Code = "/usr/share/OVMF/OVMF_CODE_4M.fd", VarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-ovmf").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private static RunningEngine Boot(string vars) => EngineProcess.Start(
        ["-A", "-m", "256M", "-s", "0,hostbridge,model=q35", "-s", "31,lpc", "-l", "com1,stdio", "-l", $"bootrom,{Code},{vars}"]);

    [SkippableFact]
    public void Ovmf_BootsToItsShell_AndKeepsItsVariablesInTheVmsOwnStore()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(File.Exists(Code) && File.Exists(VarsTemplate), $"Debian's ovmf package is not installed ({Code}, {VarsTemplate})");
        Skip.IfNot(LinuxKernels.HostHasHardwareVirtualization(out string reason), reason + "; OVMF stops early there too (in QEMU as well)");

        string vars = Path.Combine(_dir, "uefi-vars.fd");
        File.Copy(VarsTemplate, vars);
        using (var engine = Boot(vars))
        {
            // With no disk, the boot manager falls through to the shell the firmware volume carries.
            engine.ReadUntil("UEFI Interactive Shell", TimeSpan.FromSeconds(180));
            engine.ReadUntil("Shell>", TimeSpan.FromSeconds(60));
            engine.Kill();
        }
        Assert.NotEqual(File.ReadAllBytes(VarsTemplate), File.ReadAllBytes(vars));   // the boot options it stored

        // The second boot starts from the store the first one wrote: a store the flash had damaged would stop the
        // variable driver before the boot manager runs.
        using (var again = Boot(vars))
        {
            again.ReadUntil("BdsDxe: loading Boot", TimeSpan.FromSeconds(180));
            again.ReadUntil("Shell>", TimeSpan.FromSeconds(60));
            again.Kill();
        }
    }
}
