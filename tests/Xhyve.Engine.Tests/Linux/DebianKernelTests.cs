using System.Diagnostics;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>
/// Boots the Debian cloud kernel (fetched with apt-get download by tests/linux/fetch-debian-kernel.sh).
/// On a software-nested KVM host the kernel runs only to its early console, so the first test asserts on
/// that part and stops the VM itself; the initramfs test needs VT-x/AMD-V.
/// </summary>
public sealed class DebianKernelTests
{
    private const string CommandLine = "earlyprintk=serial,ttyS0,115200 console=ttyS0 xhyve.smoke=1";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    private static string FetchKernel()
    {
        var psi = new ProcessStartInfo(Path.Combine(EngineProcess.Root, "tests/linux/fetch-debian-kernel.sh"))
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"fetch-debian-kernel.sh failed: {stderr}");
        return stdout.Trim().Split('\n').Last();
    }

    /// <summary>The e820 lines as Linux prints them ("BIOS-e820: [mem 0x...-0x...] usable").</summary>
    private static List<string> ExpectedE820(ulong memoryBytes)
    {
        using var memory = new GuestMemory(X86Layout.RamRegions(memoryBytes));
        return E820Map.Build(memory).Select(e =>
            $"BIOS-e820: [mem 0x{e.Address:x16}-0x{e.End - 1:x16}] {(e.Type == E820Type.Ram ? "usable" : "reserved")}").ToList();
    }

    [SkippableTheory]
    [InlineData("512M", 512UL << 20)]
    [InlineData("3200M", 3200UL << 20)]   // 3 GiB below the PCI hole, 128 MiB above 4 GiB
    public void DebianKernel_PrintsBannerTheEngineE820MapAndOurCommandLine(string memory, ulong bytes)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        using var p = EngineProcess.Start(["-m", memory, "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{CommandLine}"]);
        string console;
        try
        {
            console = EngineProcess.ReadUntil(p, $"Kernel command line: {CommandLine}", Bound);
        }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
        }
        Assert.Equal(0, p.ExitCode);
        Assert.Matches(@"Linux version 6\.\d+\.\d+-\d+-cloud-amd64", console);
        var e820 = Regex.Matches(console, @"BIOS-e820: \[mem 0x[0-9a-f]{16}-0x[0-9a-f]{16}\] \w+").Select(m => m.Value).ToList();
        Assert.Equal(ExpectedE820(bytes), e820);
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void DebianKernel_FindsAcpiTablesWithMinusA_AndTheMpTableWithout(bool acpi)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = FetchKernel();
        string[] flags = acpi ? ["-A"] : [];
        using var p = EngineProcess.Start([.. flags, "-c", "2", "-m", "512M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{kernel},,{CommandLine}"]);
        string console;
        // With MP or ACPI tables the kernel allows 2 CPUs; a kernel that can read neither allows 1.
        try { console = EngineProcess.ReadUntil(p, "smpboot: Allowing ", Bound) + EngineProcess.ReadUntil(p, "CPUs", TimeSpan.FromSeconds(30)); }
        finally
        {
            EngineProcess.Signal(p, "TERM");
            p.WaitForExit(10_000);
        }
        Assert.Contains("SMBIOS 2.8 present", console);
        Assert.Contains(acpi ? "smpboot: Allowing 2 CPUs" : "smpboot: Allowing", console);
        Assert.Contains("DMI: XhyvePS xhyve", console);
        if (acpi)
        {
            foreach (var table in new[] { "RSDP", "XSDT", "FACP", "DSDT", "FACS", "APIC", "HPET", "MCFG" })
                Assert.Matches($@"ACPI: {table} 0x[0-9A-F]+ ", console);
            Assert.Contains("ACPI: PM-Timer IO Port: 0x408", console);
            Assert.Contains("Using ACPI (MADT) for SMP configuration information", console);
        }
        else
        {
            Assert.Contains("A valid RSDP was not found", console);
            // Debian's cloud kernel is built without CONFIG_X86_MPPARSE and ignores MP tables; the MP
            // table itself is checked by the acpi test guest. A kernel with MP support must use it.
            string config = File.ReadAllText(Directory.GetFiles(Path.GetDirectoryName(kernel)!, "config-*").Single());
            if (config.Contains("CONFIG_X86_MPPARSE=y")) Assert.Contains("Intel MultiProcessor Specification v1.4", console);
            else Assert.Contains("smpboot: Boot CPU (id 0) not listed by BIOS", console);
        }
    }

    private static bool HostHasHardwareVirtualization(out string reason)
    {
        if (Directory.Exists("/sys/module/kvm_pvm"))
        {
            reason = "the host KVM is kvm_pvm (software nesting emulates guest kernel code and stops Linux before userspace); this test needs VT-x or AMD-V";
            return false;
        }
        string flags = File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "";
        if (!Regex.IsMatch(flags, @"\b(vmx|svm)\b"))
        {
            reason = "the host CPU shows neither vmx nor svm; this test needs hardware virtualization";
            return false;
        }
        reason = "";
        return true;
    }

    [SkippableFact]
    public void DebianKernel_RunsABusyboxInitramfsToItsMarker()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(HostHasHardwareVirtualization(out string reason), reason);
        Assert.True(File.Exists("/bin/busybox"), "/bin/busybox is missing (apt-get install busybox-static)");
        string kernel = FetchKernel();
        string dir = Directory.CreateTempSubdirectory("initramfs").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "root/bin"));
            File.Copy("/bin/busybox", Path.Combine(dir, "root/bin/busybox"));
            File.WriteAllText(Path.Combine(dir, "root/init"), "#!/bin/busybox sh\n/bin/busybox echo XHYVE-INITRAMFS-MARKER\n/bin/busybox reboot -f\n");
            File.SetUnixFileMode(Path.Combine(dir, "root/init"), (UnixFileMode)0b111_101_101);
            using (var cpio = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "find . | cpio -o -H newc > ../initrd.cpio"]) { WorkingDirectory = Path.Combine(dir, "root"), RedirectStandardError = true })!)
            {
                cpio.WaitForExit();
                Assert.Equal(0, cpio.ExitCode);
            }
            var run = EngineProcess.Run(["-m", "512M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
                "-f", $"kexec,{kernel},{Path.Combine(dir, "initrd.cpio")},console=ttyS0 rdinit=/init"], timeoutSeconds: (int)Bound.TotalSeconds);
            Assert.Contains("XHYVE-INITRAMFS-MARKER", run.Stdout);
            Assert.Equal(2, run.ExitCode); // reboot -f: the kernel resets through the keyboard controller
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The virtio modules of the Debian package, in load order (fetch-debian-kernel.sh caches them).</summary>
    private static readonly string[] VirtioModules = ["virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"];

    [SkippableFact]
    public void DebianKernel_FindsTheVirtioBlockDisk()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(HostHasHardwareVirtualization(out string reason), reason);
        Assert.True(File.Exists("/bin/busybox"), "/bin/busybox is missing (apt-get install busybox-static)");
        string kernel = FetchKernel();
        string modules = Path.Combine(Path.GetDirectoryName(kernel)!, "modules");
        string dir = Directory.CreateTempSubdirectory("initramfs-vblk").FullName;
        try
        {
            string root = Path.Combine(dir, "root");
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            Directory.CreateDirectory(Path.Combine(root, "sys"));
            File.Copy("/bin/busybox", Path.Combine(root, "bin/busybox"));
            foreach (var m in VirtioModules) File.Copy(Path.Combine(modules, m + ".ko"), Path.Combine(root, m + ".ko"));
            File.WriteAllText(Path.Combine(root, "init"), "#!/bin/busybox sh\n" +
                string.Concat(VirtioModules.Select(m => $"/bin/busybox insmod /{m}.ko\n")) +
                "/bin/busybox mount -t sysfs sysfs /sys\n" +
                "/bin/busybox sleep 1\n" +
                "echo XHYVE-VDA size=$(/bin/busybox cat /sys/block/vda/size) ro=$(/bin/busybox cat /sys/block/vda/ro)\n" +
                "/bin/busybox reboot -f\n");
            File.SetUnixFileMode(Path.Combine(root, "init"), (UnixFileMode)0b111_101_101);
            using (var cpio = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "find . | cpio -o -H newc > ../initrd.cpio"]) { WorkingDirectory = root, RedirectStandardError = true })!)
            {
                cpio.WaitForExit();
                Assert.Equal(0, cpio.ExitCode);
            }
            string disk = Path.Combine(dir, "disk.img");
            using (var f = File.Create(disk)) f.SetLength(8 << 20);
            var run = EngineProcess.Run(["-A", "-m", "512M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-s", $"4,virtio-blk,{disk}",
                "-f", $"kexec,{kernel},{Path.Combine(dir, "initrd.cpio")},console=ttyS0 rdinit=/init"], timeoutSeconds: (int)Bound.TotalSeconds);
            Assert.Contains("XHYVE-VDA size=16384 ro=0", run.Stdout);
        }
        finally { Directory.Delete(dir, true); }
    }
}
