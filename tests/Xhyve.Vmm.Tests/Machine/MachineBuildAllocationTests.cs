using Xhyve.Vmm.Config;
using Xhyve.Vmm.Tests.Boot;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Machine;

/// <summary>Issue 16, item 5: building a machine (ACPI, two vCPUs, the LPC devices, virtio-rnd, a multiboot kernel)
/// allocates little managed memory, and nothing that grows with the guest's RAM. Measured on the recording
/// hypervisor, told not to copy what it maps.</summary>
public sealed class MachineBuildAllocationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("build-alloc").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private sealed class NoEvents : IPlatformEvents
    {
        public void RequestStop(VmExitStatus status, string reason) { }
    }

    private long AllocatedByBuild(string memory)
    {
        string kernel = Path.Combine(_dir, "k.elf");
        File.WriteAllBytes(kernel, ImageBuilder.Elf(false, 0x100000, new byte[64], prefix: ImageBuilder.MultibootHeader()));
        var spec = CommandLineParser.Parse(["-A", "-c", "2", "-m", memory, "-s", "0,hostbridge", "-s", "31,lpc", "-s", "4,virtio-rnd",
            "-l", "com1,null", "-f", $"multiboot,{kernel}"]).Spec;
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var machine = new VmBuilder(spec, new RecordingHypervisor(copyContents: false), new NoEvents()).Build();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void BuildingAMachine_AllocatesUnderAFewHundredKiB_WhateverTheGuestsRam()
    {
        AllocatedByBuild("64M");                 // first use: static tables, pools
        long small = AllocatedByBuild("64M"), large = AllocatedByBuild("4G");
        // About 500 KiB today, most of it the ACPI tables' AML composed from byte arrays.
        Assert.True(small < 768 << 10, $"building a 64 MiB machine allocated {small} managed bytes");
        Assert.True(Math.Abs(large - small) < 16 << 10, $"a 4 GiB machine allocated {large} bytes, a 64 MiB one {small}: the build grows with RAM");
    }
}
