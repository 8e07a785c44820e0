namespace Xhyve.Engine.Tests.Linux;

/// <summary>-x hands the kernel local APICs already in x2APIC mode (with x2APIC entries in the MADT): Linux
/// must take them as they are and bring up every CPU. Only a kernel built with CONFIG_X86_X2APIC can, so
/// this runs on the test kernel's x2APIC build (tests/linux/build-x2apic-kernel.sh) and on Debian's.
/// Without interrupt remapping or a hypervisor hint that test kernel then leaves x2APIC mode again, which
/// also exercises the x2APIC to xAPIC transition.</summary>
public sealed class X2ApicBoot : LinuxBootFixture
{
    public static TheoryData<string> X2ApicKernels => new() { LinuxKernel.TestKernelX2Apic, LinuxKernel.Debian };

    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        Skip.IfNot(kernel.Has("X86_X2APIC"), $"{kernel.Image} is built without CONFIG_X86_X2APIC, so Linux cannot take over x2APIC mode");
        var spec = new LinuxBootSpec("""
            mark cpus "$(grep -c ^processor /proc/cpuinfo)"
            dmesg | grep -iE 'x2apic' | while read -r line; do mark apic "$line"; done
            mark done ok
            poweroff -f
            """) { Cpus = 2, EngineArgs = ["-x"] };
        return LinuxHarness.Boot(kernel, dir, spec);
    }
}

[Collection("Linux"), Trait("Category", "Linux")]
public sealed class LinuxX2ApicTests(X2ApicBoot boot) : IClassFixture<X2ApicBoot>
{
    [SkippableTheory]
    [MemberData(nameof(X2ApicBoot.X2ApicKernels), MemberType = typeof(X2ApicBoot))]
    public void MinusX_LinuxFindsTheApicsInX2ApicMode_AndBringsUpEveryCpu(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Contains(run.All("apic"), l => l.Contains("x2apic: enabled by BIOS, switching to x2apic ops", StringComparison.Ordinal));
        Assert.Equal("2", run.Marker("cpus"));
        run.AssertExit(0);
    }
}
