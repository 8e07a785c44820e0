namespace Xhyve.Vmm.Hypervisor;

/// <summary>A host hypervisor API (KVM on Linux; Hypervisor.framework on macOS later).</summary>
public interface IHypervisor : IDisposable
{
    /// <summary>Short backend name for messages ("kvm").</summary>
    string Name { get; }

    /// <summary>The most vCPUs one VM may have on this host.</summary>
    int MaxVcpus { get; }

    /// <summary>Creates an empty VM with an in-kernel interrupt controller and timer.</summary>
    IVirtualMachine CreateVm();
}

/// <summary>One VM of a backend: memory slots, interrupt lines and vCPUs.</summary>
public interface IVirtualMachine : IDisposable
{
    /// <summary>Maps <paramref name="size"/> bytes of host memory at <paramref name="hostAddress"/>
    /// into the guest physical address space at <paramref name="guestAddress"/> as memory slot <paramref name="slot"/>.
    /// With <paramref name="readOnly"/> the guest reads the memory directly but its writes there exit to the VMM as
    /// MMIO writes (a boot ROM, a flash device); throws <see cref="HypervisorException"/> when the backend cannot.</summary>
    void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false);

    /// <summary>Removes memory slot <paramref name="slot"/> from the guest physical address space (nothing happens for
    /// a slot never mapped); the host memory stays the caller's.</summary>
    void UnmapMemory(int slot);

    /// <summary>Drives a GSI of the in-kernel interrupt controllers (PIC and IOAPIC).</summary>
    void SetIrqLine(int gsi, bool level);

    /// <summary>Routes each GSI to IOAPIC pin GSI and, where <paramref name="picIrqForGsi"/> names one, also to
    /// that 8259 input (ISA GSIs 0-15 keep their PIC inputs).</summary>
    void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi);

    /// <summary>-w: accesses to MSRs the hypervisor does not know exit to the VMM (which reads 0 and drops
    /// writes) instead of raising #GP in the guest.</summary>
    void EnableUnknownMsrExits();

    /// <summary>Delivers a message-signalled interrupt (the address/data pair a device wrote).</summary>
    void SignalMsi(ulong address, uint data);

    /// <summary>Binds a new eventfd to the message (<paramref name="address"/>, <paramref name="data"/>) inside the
    /// hypervisor (KVM irqfd on an MSI route), so raising the interrupt is one eventfd write from any thread. Null
    /// when the backend cannot (no irqfd, or its routes are used up); the caller then uses <see cref="SignalMsi"/>.</summary>
    IMsiRoute? TryCreateMsiRoute(ulong address, uint data);

    /// <summary>From now on a guest write of <paramref name="width"/> bytes at <paramref name="address"/> (port I/O
    /// or MMIO; with <paramref name="dataMatch"/>, only of that value) signals <paramref name="target"/> inside
    /// the hypervisor instead of exiting to the vCPU thread. False when the backend cannot.</summary>
    bool TryAttachDoorbell(Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch);

    /// <summary>Undoes <see cref="TryAttachDoorbell"/> (same arguments).</summary>
    void DetachDoorbell(Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch);

    /// <summary>Creates vCPU <paramref name="id"/> with CPUID leaves for a VM of <paramref name="vcpuCount"/> CPUs;
    /// with <paramref name="x2Apic"/> its local APIC starts in x2APIC mode (-x).</summary>
    IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false);
}

/// <summary>A message-signalled interrupt the hypervisor injects when its eventfd is written.</summary>
public interface IMsiRoute : IDisposable
{
    ulong Address { get; }
    uint Data { get; }

    /// <summary>Points the route at another message (the guest rewrote the vector's entry); false when the
    /// hypervisor refused, after which the route must not be used.</summary>
    bool Update(ulong address, uint data);

    /// <summary>Raises the interrupt.</summary>
    void Signal();
}

/// <summary>A virtual CPU. <see cref="Run"/> is called only from the vCPU's own thread. <see cref="Kick"/> may
/// come from any thread at any time, also after Dispose (then it does nothing).</summary>
public interface IVcpu : IDisposable
{
    int Id { get; }

    /// <summary>Enters the guest until the next exit that needs the VMM.</summary>
    VcpuExit Run();

    /// <summary>Forces a running or about-to-run <see cref="Run"/> to return
    /// <see cref="VcpuExitReason.Interrupted"/> soon. Callable from any thread.</summary>
    void Kick();

    /// <summary>Binds the vCPU to the calling thread (must be called on the vCPU thread before Run). Throws
    /// <see cref="ObjectDisposedException"/> once the vCPU is disposed.</summary>
    void AttachToCurrentThread();

    /// <summary>The vCPU thread calls this when it will not call <see cref="Run"/> again; until then
    /// <see cref="IDisposable.Dispose"/> keeps the vCPU's host resources, since Run may still use them.</summary>
    void DetachFromCurrentThread();

    /// <summary>A thread is attached: it may still be inside <see cref="Run"/>.</summary>
    bool IsAttached { get; }

    /// <summary>Sets the architectural state the vCPU starts in.</summary>
    void SetBootState(in X86BootState state);

    /// <summary>Sets the memory types firmware would program before the OS starts (the MTRRs on x86), on every vCPU
    /// before it runs. Returns the ranges the CPU's MTRRs could not describe (they stay write-back); all of them when
    /// the vCPU has no MTRRs.</summary>
    IReadOnlyList<UncachedRange> SetMemoryTypes(X86MemoryTypes types);

    /// <summary>Current RIP and the guest-physical address it maps to (for diagnostics).</summary>
    (ulong Rip, ulong? PhysicalRip) GetInstructionPointer();
}
