namespace Xhyve.Engine.Tests.Linux;

/// <summary>-x puts the local APICs in x2APIC mode before the kernel starts: Linux must take them as they
/// are and bring up every CPU. Only a kernel built with CONFIG_X86_X2APIC can (the test kernel is not:
/// there the test says so and does not boot).</summary>
public sealed class X2ApicBoot : LinuxBootFixture
{
    protected override LinuxRun Boot(LinuxKernel kernel, string dir)
    {
        Skip.IfNot(kernel.Has("X86_X2APIC"), $"the {kernel.Kind} ({kernel.Image}) is built without CONFIG_X86_X2APIC, so Linux cannot run with x2APIC mode on (-x); rebuild it with X86_X2APIC (which needs HYPERVISOR_GUEST or IRQ_REMAP) to run this test");
        var spec = new LinuxBootSpec("""
            mark cpus "$(grep -c ^processor /proc/cpuinfo)"
            mark x2apic "$(dmesg | grep -ciE 'x2apic')"
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
    [MemberData(nameof(LinuxBootFixture.Kernels), MemberType = typeof(LinuxBootFixture))]
    public void MinusX_LinuxRunsInX2ApicMode_WithEveryCpu(string kernel)
    {
        var run = boot.Run(kernel);
        Assert.Equal("2", run.Marker("cpus"));
        Assert.Contains(run.All("apic"), l => l.Contains("x2apic", StringComparison.OrdinalIgnoreCase) && !l.Contains("does not support", StringComparison.OrdinalIgnoreCase));
        run.AssertExit(0);
    }
}
