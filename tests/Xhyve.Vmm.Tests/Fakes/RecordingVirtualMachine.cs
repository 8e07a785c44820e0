using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>A VM that records the memory slots it is asked to map and unmap (with a copy of the bytes mapped, read
/// at the call) and refuses everything else.</summary>
internal sealed unsafe class RecordingVirtualMachine : IVirtualMachine
{
    public sealed record Mapping(int Slot, ulong GuestAddress, nint HostAddress, ulong Size, bool ReadOnly, byte[] Contents);

    public List<Mapping> Mappings { get; } = new();
    public List<int> Unmapped { get; } = new();

    public void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false) =>
        Mappings.Add(new Mapping(slot, guestAddress, hostAddress, size, readOnly, new ReadOnlySpan<byte>((void*)hostAddress, (int)size).ToArray()));

    public void UnmapMemory(int slot) => Unmapped.Add(slot);

    public void SetIrqLine(int gsi, bool level) => throw new NotSupportedException();
    public void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi) => throw new NotSupportedException();
    public void EnableUnknownMsrExits() => throw new NotSupportedException();
    public void SignalMsi(ulong address, uint data) => throw new NotSupportedException();
    public IMsiRoute? TryCreateMsiRoute(ulong address, uint data) => throw new NotSupportedException();
    public bool TryAttachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
    public void DetachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
    public IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false) => throw new NotSupportedException();
    public void Dispose() { }
}
