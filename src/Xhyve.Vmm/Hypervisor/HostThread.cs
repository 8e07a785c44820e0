using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Hypervisor;

/// <summary>Host-thread placement for vCPU threads (-p vcpu:hostcpu).</summary>
public static partial class HostThread
{
    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static unsafe partial int SchedSetAffinity(int pid, nuint size, ulong* mask);

    /// <summary>Restricts the calling thread to one host CPU.</summary>
    public static unsafe void PinCurrentThread(int hostCpu)
    {
        const int words = 16; // 1024 CPUs
        if (hostCpu is < 0 or >= words * 64) throw new ArgumentOutOfRangeException(nameof(hostCpu));
        ulong* mask = stackalloc ulong[words];
        new Span<ulong>(mask, words).Clear();
        mask[hostCpu / 64] = 1UL << (hostCpu % 64);
        if (SchedSetAffinity(0, words * sizeof(ulong), mask) != 0)
            throw new HypervisorException($"-p: cannot pin a vCPU thread to host CPU {hostCpu}", Marshal.GetLastPInvokeError());
    }
}
