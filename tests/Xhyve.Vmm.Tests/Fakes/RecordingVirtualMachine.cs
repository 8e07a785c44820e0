using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>A VM that records the memory slots it is asked to map and unmap (with a copy of the bytes mapped, read
/// at the call, unless <paramref name="copyContents"/> is false) and the vCPUs it creates, and accepts the rest
/// without doing anything.</summary>
internal sealed unsafe class RecordingVirtualMachine(bool copyContents = true) : IVirtualMachine
{
    public sealed record Mapping(int Slot, ulong GuestAddress, nint HostAddress, ulong Size, bool ReadOnly, byte[] Contents);

    public List<Mapping> Mappings { get; } = new();
    public List<int> Unmapped { get; } = new();

    public void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false) =>
        Mappings.Add(new Mapping(slot, guestAddress, hostAddress, size, readOnly, copyContents ? new ReadOnlySpan<byte>((void*)hostAddress, (int)size).ToArray() : []));

    public void UnmapMemory(int slot) => Unmapped.Add(slot);

    public List<RecordingVcpu> Vcpus { get; } = new();

    // What a builder needs besides memory, accepted and ignored: no interrupts are delivered, no doorbells or
    // MSI routes exist (devices then fall back to exits and SignalMsi).
    public void SetIrqLine(int gsi, bool level) { }
    public void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi) { }
    public void EnableUnknownMsrExits() { }
    public void SignalMsi(ulong address, uint data) { }
    public IMsiRoute? TryCreateMsiRoute(ulong address, uint data) => null;
    public bool TryAttachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => false;
    public void DetachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) { }

    public IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false)
    {
        var vcpu = new RecordingVcpu(id);
        Vcpus.Add(vcpu);
        return vcpu;
    }

    public void Dispose() { }
}

/// <summary>A vCPU that never runs and records the boot state it was given.</summary>
internal sealed class RecordingVcpu(int id) : IVcpu
{
    public int Id => id;
    public X86BootState? BootState { get; private set; }
    public void SetBootState(in X86BootState state) => BootState = state;
    public X86MemoryTypes? MemoryTypes { get; private set; }
    public IReadOnlyList<UncachedRange> SetMemoryTypes(X86MemoryTypes types) { MemoryTypes = types; return types.Uncached; }
    public VcpuExit Run() => throw new NotSupportedException();
    public void Kick() { }
    public void AttachToCurrentThread() { }
    public void DetachFromCurrentThread() { }
    public bool IsAttached => false;
    public (ulong Rip, ulong? PhysicalRip) GetInstructionPointer() => (0, null);
    public void Dispose() { }
}

/// <summary>A hypervisor whose VMs are <see cref="RecordingVirtualMachine"/>s (copying what they map unless
/// <paramref name="copyContents"/> is false).</summary>
internal sealed class RecordingHypervisor(bool copyContents = true) : IHypervisor
{
    public List<RecordingVirtualMachine> Vms { get; } = new();
    public string Name => "recording";
    public int MaxVcpus => 64;
    public IVirtualMachine CreateVm()
    {
        var vm = new RecordingVirtualMachine(copyContents);
        Vms.Add(vm);
        return vm;
    }
    public void Dispose() { }
}
