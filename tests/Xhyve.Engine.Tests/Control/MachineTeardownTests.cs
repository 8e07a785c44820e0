using Xhyve.Vmm;
using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Engine.Tests.Control;

/// <summary>Machine.DisposedFully, which the engine reads before building the machine again after a reset: a machine
/// kept alive for a stuck vCPU thread must be reported, so the engine ends instead of leaking one per reset.</summary>
public sealed class MachineTeardownTests
{
    /// <summary>A vCPU whose thread left Run (or, <paramref name="stuck"/>, never did: it stays attached after Dispose).</summary>
    private sealed class TestVcpu(bool stuck) : IVcpu
    {
        public bool Disposed { get; private set; }
        public int Id => 0;
        public bool IsAttached => stuck;
        public VcpuExit Run() => throw new InvalidOperationException("not run in this test");
        public void Kick() { }
        public void AttachToCurrentThread() { }
        public void DetachFromCurrentThread() { }
        public void SetBootState(in X86BootState state) { }
        public IReadOnlyList<UncachedRange> SetMemoryTypes(X86MemoryTypes types) => types.Uncached;
        public (ulong Rip, ulong? PhysicalRip) GetInstructionPointer() => (0, null);
        public void Dispose() => Disposed = true;
    }

    /// <summary>A VM that only records its disposal; nothing else is called by Machine.Dispose.</summary>
    private sealed class TestVm : IVirtualMachine
    {
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
        public void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false) => throw new NotSupportedException();
        public void UnmapMemory(int slot) => throw new NotSupportedException();
        public void SetIrqLine(int gsi, bool level) => throw new NotSupportedException();
        public void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi) => throw new NotSupportedException();
        public void EnableUnknownMsrExits() => throw new NotSupportedException();
        public void SignalMsi(ulong address, uint data) => throw new NotSupportedException();
        public IMsiRoute? TryCreateMsiRoute(ulong address, uint data) => throw new NotSupportedException();
        public bool TryAttachDoorbell(Xhyve.Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
        public void DetachDoorbell(Xhyve.Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
        public IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false) => throw new NotSupportedException();
    }

    private static Machine MachineWith(IVirtualMachine vm, Xhyve.Vmm.Memory.GuestMemory memory, IVcpu vcpu) => new()
    {
        Vm = vm, Memory = memory, PortIo = null!, Mmio = null!, Dispatcher = null!, Kernel = null!, Pci = null!, Post = null!,
        Power = null!, Acpi = false, Vcpus = [vcpu], SerialPorts = [], Uarts = [], HostResources = [],
    };

    [Fact]
    public void AMachineWhoseVcpuThreadsEnded_IsDisposedFully_VmIncluded()
    {
        var vm = new TestVm();
        var machine = MachineWith(vm, new Xhyve.Vmm.Memory.GuestMemory([]), new TestVcpu(stuck: false));
        machine.Dispose();
        Assert.True(vm.Disposed);
        Assert.True(machine.DisposedFully);
    }

    [Fact]
    public void AMachineWithAVcpuThreadStillAttached_IsNotDisposedFully_AndKeepsItsVmAndMemory()
    {
        var vcpu = new TestVcpu(stuck: true);
        var vm = new TestVm();
        var machine = MachineWith(vm, new Xhyve.Vmm.Memory.GuestMemory([]), vcpu);
        machine.Dispose();
        Assert.False(vm.Disposed);
        Assert.True(vcpu.Disposed);
        Assert.False(machine.DisposedFully);
    }
}
