namespace Xhyve.Vmm.Hypervisor;

public enum VcpuExitReason
{
    /// <summary>Port I/O: <see cref="VcpuExit.Port"/>, <see cref="VcpuExit.Data"/>.</summary>
    Io,
    /// <summary>MMIO outside RAM: <see cref="VcpuExit.Address"/>, <see cref="VcpuExit.Data"/>.</summary>
    Mmio,
    /// <summary>HLT reached userspace (only without an in-kernel irqchip).</summary>
    Halt,
    /// <summary>Triple fault or other shutdown of the vCPU.</summary>
    Shutdown,
    /// <summary>The guest requested a reset through the platform (e.g. PSCI-like system event).</summary>
    SystemReset,
    /// <summary>The guest requested power off through a system event.</summary>
    SystemShutdown,
    /// <summary><see cref="IVcpu.Kick"/> or a signal interrupted the run.</summary>
    Interrupted,
    /// <summary>An AP is waiting for INIT/SIPI; run again later.</summary>
    WaitingForStartup,
    /// <summary>The hypervisor could not handle something (e.g. emulation failure).</summary>
    InternalError,
    /// <summary>VM entry failed (bad guest state).</summary>
    FailEntry,
    /// <summary>The guest read an MSR the hypervisor does not know (only with unknown-MSR exits on):
    /// <see cref="VcpuExit.Address"/> is the MSR, write the value into <see cref="VcpuExit.Data"/>.</summary>
    MsrRead,
    /// <summary>The guest wrote an unknown MSR: <see cref="VcpuExit.Address"/>, value in <see cref="VcpuExit.Data"/>.</summary>
    MsrWrite,
    /// <summary>Anything else; <see cref="VcpuExit.RawReason"/> names it.</summary>
    Unknown,
}

/// <summary>
/// One exit of a vCPU. A ref struct over the backend's shared run page: reading it allocates
/// nothing, and <see cref="Data"/> is written back to the guest on the next run.
/// </summary>
public readonly ref struct VcpuExit
{
    public VcpuExitReason Reason { get; init; }
    public uint RawReason { get; init; }
    public ushort Port { get; init; }
    public ulong Address { get; init; }
    public bool IsWrite { get; init; }
    /// <summary>Access width in bytes (1, 2, 4 or 8).</summary>
    public int Size { get; init; }
    /// <summary>Number of repeated accesses (string I/O); Data holds Size * Count bytes.</summary>
    public int Count { get; init; }
    public Span<byte> Data { get; init; }
    /// <summary>Backend-specific detail (e.g. internal error suberror).</summary>
    public ulong Detail { get; init; }
}
