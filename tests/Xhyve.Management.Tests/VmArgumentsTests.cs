using Xhyve.Vmm.Config;
using Xhyve.Management.Model;

namespace Xhyve.Management.Tests;

/// <summary>VM objects and xhyve command lines, both ways, on the lines users actually have.</summary>
public sealed class VmArgumentsTests
{
    [Fact]
    public void XhyverunSh_BecomesAVm_WithItsKernelDiskAndFlags()
    {
        // The how-to's install.sh, with ACPI and a second, split/sparse disk
        string[] line = ["-A", "-m", "1G", "-c", "2", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-s", "2,virtio-blk,hdd.img,sectorsize=4096,size=20G,split=1G,sparse", "-s", "3,virtio-net", "-u",
            "-U", "6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11", "-f", "kexec,vmlinuz,initrd.gz,earlyprintk=serial console=ttyS0"];
        var (vm, warnings) = VmArguments.FromArguments(line, "ubuntu");
        Assert.Equal("ubuntu", vm.Name);
        Assert.Equal((2, 1L << 30, true), (vm.ProcessorCount, vm.MemoryStartupBytes, vm.Acpi));
        Assert.Equal(Guid.Parse("6f1d4c0e-2b7a-4c55-9a0e-0c1f4b7e9a11"), vm.Id);
        Assert.Equal(("vmlinuz", "initrd.gz", "earlyprintk=serial console=ttyS0"), (vm.KernelPath, vm.InitrdPath, vm.KernelCommandLine));
        var disk = Assert.Single(vm.Disks);
        Assert.Equal(("hdd.img", 2, "sectorsize=4096,size=20G,split=1G,sparse"), (disk.Path, disk.Slot, disk.Options));
        var adapter = Assert.Single(vm.NetworkAdapters);
        Assert.Equal((3, Xhyve.Vmm.Config.NetBackendKind.User, null), (adapter.Slot, adapter.Mode, adapter.MacAddress));
        Assert.Equal(["-u"], vm.ExtraArguments);
        Assert.Contains(warnings, w => w.StartsWith("-l com1,stdio", StringComparison.Ordinal));
    }

    [Fact]
    public void AVm_BecomesTheEngineLine_WithItsConsoleLog()
    {
        var vm = new VirtualMachine { Name = "web", Id = Guid.Parse("11111111-2222-3333-4444-555555555555"), ProcessorCount = 2, MemoryStartupBytes = 1L << 30,
            KernelPath = "/vm/vmlinuz", InitrdPath = "/vm/initrd.gz", KernelCommandLine = "console=ttyS0" };
        vm.Disks.Add(new VmDisk { Path = "/vm/web.img", Slot = 2 });
        Assert.Equal(["-A", "-c", "2", "-m", "1G", "-U", "11111111-2222-3333-4444-555555555555", "-s", "0:0:0,hostbridge", "-s", "0:31:0,lpc",
            "-s", "0:2:0,virtio-blk,/vm/web.img", "-l", "com1,log=/store/web/console.log", "-f", "kexec,/vm/vmlinuz,/vm/initrd.gz,console=ttyS0", "--name=web"],
            VmArguments.ToArguments(vm, "/store/web/console.log"));
    }

    public static TheoryData<string[]> Lines => new()
    {
        new[] { "-A", "-m", "1G", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", "kexec,vmlinuz,initrd.gz,earlyprintk=serial console=ttyS0" },
        new[] { "-c", "4", "-m", "3G", "-s", "0,hostbridge", "-s", "31,lpc", "-s", "4,virtio-blk,/vm/a.img,ro", "-s", "5,virtio-blk,/vm/b.img,size=1G,split=256M,sparse",
            "-s", "6,virtio-rnd", "-s", "7,virtio-tap,tap0,mac=52:54:00:12:34:56", "-l", "com2,autopty", "-x", "-w", "-p", "0:1",
            "-f", "multiboot,/boot/kernel.elf,/boot/m1;arg=1:/boot/m2,debug", "--name=lab" },
        new[] { "-f", "kexec,/boot/bzImage,,root=/dev/vda", "--kernel-load=bzimage" },
    };

    [Theory]
    [MemberData(nameof(Lines))]
    public void LineToVmToLineToVm_IsStable(string[] line)
    {
        var first = VmArguments.FromArguments(line, "rt").Vm;
        var args = VmArguments.ToArguments(first, null);
        var second = VmArguments.FromArguments(args, "rt").Vm;
        second.CreatedUtc = first.CreatedUtc;
        Assert.Equal(VmJson.Serialize(first), VmJson.Serialize(second));
    }

    [Fact]
    public void BadExtraArguments_AreRefused_BeforeAnEngineSeesThem()
    {
        var vm = new VirtualMachine { Name = "x", KernelPath = "/k" };
        vm.ExtraArguments.Add("-Q");
        var e = Assert.Throws<VmDefinitionException>(() => VmArguments.ToArguments(vm, null));
        Assert.Contains("ExtraArguments: -Q: unknown flag", e.Message);
    }

    [Theory]
    [InlineData(new[] { "-m", "lots", "-f", "kexec,k" }, "-m lots")]
    [InlineData(new[] { "-s", "0,hostbridge" }, "no -f")]
    [InlineData(new[] { "-f", "bootrom,/x.fd" }, "bootrom")]
    public void LinesAVmCannotBe_AreRefusedNamingTheProblem(string[] line, string expected) =>
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmArguments.FromArguments(line)).Message);

    /// <summary>A line the engine would refuse is refused when converted, with the engine's own words (not when the VM
    /// first starts); the files it names are looked for only when the VM is stored.</summary>
    [Theory]
    [InlineData("-l com1,stdio -f kexec,/k", "-l com1/com2: the COM ports live on the LPC bridge; add -s 31,lpc")]
    [InlineData("-s 31,lpc -s 3,virtio-rnd -s 3,virtio-rnd -f kexec,/k", "slot 0:3:0 is already used by virtio-rnd")]
    [InlineData("-s 31,lpc -s 30,lpc -f kexec,/k", "only one LPC bridge is allowed")]
    [InlineData("-c 2 -p 5:0 -f kexec,/k", "-p 5:0: vCPU 5 does not exist (the VM has 2)")]
    [InlineData("-g 1234 -f kexec,/k", "-g 1234: the gdb stub is not supported yet")]
    [InlineData("-s 2,virtio-net,mac=52:54:00:00:00:01 -s 3,virtio-net,mac=52:54:00:00:00:01 -f kexec,/k", "MAC address 52:54:00:00:00:01 is already used")]
    [InlineData("-s 31,lpc -l com1,stdio -s 5,uart,stdio -f kexec,/k", "stdio can be used by only one device")]
    [InlineData("-s 3,virtio-blk,/vm/a.img -s 4,ahci-hd,/vm/a.img -f kexec,/k", "/vm/a.img is already the disk of")]
    public void LinesTheEngineWouldRefuse_AreRefusedAtConversion_WithTheEnginesMessage(string line, string expected)
    {
        var args = line.Split(' ');
        var engine = CommandLineParser.Parse(args).Spec.Validate(checkFiles: false);
        Assert.Contains(engine, p => p.Contains(expected));   // the engine's own words...
        Assert.Contains(expected, Assert.Throws<VmDefinitionException>(() => VmArguments.FromArguments(args)).Message);   // ...at conversion
    }

    [Fact]
    public void FilesALineNames_AreNotLookedForAtConversion()
    {
        var vm = VmArguments.FromArguments(["-s", "3,virtio-blk,/nowhere/a.img", "-s", "4,ahci-cd,/nowhere/b.iso", "-f", "kexec,/nowhere/k,/nowhere/i"]).Vm;
        Assert.Equal("/nowhere/k", vm.KernelPath);
        Assert.Equal("/nowhere/a.img", vm.Disks.Single().Path);
    }

    [Theory]
    [InlineData(new[] { "-m", "2G" }, "'-m 2G': the memory size belongs to the VM; set MemoryStartupBytes")]
    [InlineData(new[] { "-m", "256M" }, "'-m 256M': the memory size")]   // equal to the VM's value today: still an override
    [InlineData(new[] { "-m256M" }, "'-m256M': the memory size")]
    [InlineData(new[] { "-c", "1" }, "'-c 1': the processor count belongs to the VM; set ProcessorCount")]
    [InlineData(new[] { "-uc2" }, "'-uc2': the processor count")]
    [InlineData(new[] { "--name", "xhyve" }, "'--name xhyve': the name is the VM's Name")]
    [InlineData(new[] { "--name=other" }, "'--name=other': the name")]
    [InlineData(new[] { "-uA" }, "'-uA': ACPI belongs to the VM")]
    [InlineData(new[] { "-U", "11111111-2222-3333-4444-555555555555" }, "'-U 11111111-2222-3333-4444-555555555555': the UUID is the VM's Id")]
    [InlineData(new[] { "-f", "kexec,/other" }, "'-f kexec,/other': the boot kernel belongs to the VM")]
    [InlineData(new[] { "-l", "bootrom,/x.fd" }, "'-l bootrom,/x.fd': the boot firmware belongs to the VM")]
    [InlineData(new[] { "--control-socket", "/tmp/x.sock" }, "'--control-socket /tmp/x.sock': the engine host keeps")]
    [InlineData(new[] { "--exit-file=/tmp/x" }, "'--exit-file=/tmp/x': the engine host keeps")]
    [InlineData(new[] { "-F", "/tmp/pid" }, "'-F /tmp/pid': the engine host keeps")]
    [InlineData(new[] { "-l", "com1,stdio" }, "'-l com1,stdio': com1 is the VM's console log")]
    [InlineData(new[] { "-s", "4,virtio-blk,/d.img" }, "'-s 4,virtio-blk,/d.img': virtio-blk devices belong to the VM")]
    [InlineData(new[] { "-s", "0,hostbridge" }, "'-s 0,hostbridge': hostbridge devices belong to the VM")]
    [InlineData(new[] { "-s", "31,virtio-rnd" }, "'-s 31,virtio-rnd': slot 31 is the LPC bridge's")]
    [InlineData(new[] { "-s", "2,virtio-rnd" }, "'-s 2,virtio-rnd': slot 2 is disk /vm/a.img's")]
    [InlineData(new[] { "-h" }, "'-h': the engine would print information and exit")]
    public void ExtraArguments_CannotRedefineWhatTheVmOwns_AndTheErrorNamesTheArgument(string[] extra, string expected)
    {
        var vm = new VirtualMachine { Name = "x", KernelPath = "/k" };
        vm.Disks.Add(new VmDisk { Path = "/vm/a.img", Slot = 2 });
        vm.ExtraArguments.AddRange(extra);
        Assert.Contains("ExtraArguments " + expected, Assert.Throws<VmDefinitionException>(() => VmArguments.ToArguments(vm, null)).Message);
        Assert.Contains("ExtraArguments " + expected, string.Join("; ", vm.Validate()));
    }

    [Fact]
    public void ExtraArgumentsThatTuneTheMachine_AreKept()
    {
        var vm = new VirtualMachine { Name = "x", KernelPath = "/k" };
        vm.Disks.Add(new VmDisk { Path = "/vm/a.img", Slot = 2 });
        vm.ExtraArguments.AddRange(["-u", "-w", "-s", "5,virtio-rnd", "-s", "0:2:1,virtio-rnd", "-l", "com2,autopty", "--kernel-load=bzimage", "-p", "0:1"]);
        Assert.Empty(vm.Validate());
        Assert.Equal(vm.ExtraArguments, VmArguments.ToArguments(vm, null).TakeLast(vm.ExtraArguments.Count));
    }

    [Fact]
    public void ANewDisk_SkipsTheSlotsExtraDevicesUse()
    {
        var vm = new VirtualMachine { Name = "x", KernelPath = "/k" };
        vm.ExtraArguments.AddRange(["-s", "2,virtio-rnd", "-s", "0:3:0,virtio-rnd"]);
        Assert.Equal(4, vm.NextFreeSlot());
    }
}
