using System.Runtime.InteropServices;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Hypervisor.Kvm;

/// <summary>The Linux KVM backend: /dev/kvm ioctls.</summary>
public sealed unsafe class KvmHypervisor : IHypervisor
{
    public const string DevicePath = "/dev/kvm";
    private readonly int _fd;
    private KvmCpuidEntry2[]? _supportedCpuid;

    public string Name => "kvm";
    /// <summary>The KVM API version the backend speaks (and Open requires).</summary>
    public static int ApiVersion => KvmIoctl.ApiVersion;
    public int MaxVcpus { get; }
    internal int VcpuMmapSize { get; }
    internal int Fd => _fd;

    private KvmHypervisor(int fd)
    {
        _fd = fd;
        int api = LibC.Ioctl(fd, KvmIoctl.GetApiVersion, 0);
        if (api != KvmIoctl.ApiVersion)
            throw new HypervisorException($"{DevicePath} speaks KVM API {api}, expected {KvmIoctl.ApiVersion}");
        if (LibC.Ioctl(fd, KvmIoctl.CheckExtension, KvmIoctl.CapIrqchip) <= 0)
            throw new HypervisorException($"{DevicePath} has no in-kernel irqchip (KVM_CAP_IRQCHIP)");
        if (LibC.Ioctl(fd, KvmIoctl.CheckExtension, KvmIoctl.CapImmediateExit) <= 0)
            throw new HypervisorException($"{DevicePath} lacks KVM_CAP_IMMEDIATE_EXIT, needed to stop vCPUs");
        if (LibC.Ioctl(fd, KvmIoctl.CheckExtension, KvmIoctl.CapSignalMsi) <= 0)
            throw new HypervisorException($"{DevicePath} lacks KVM_CAP_SIGNAL_MSI, needed for MSI and MSI-X");
        int max = LibC.Ioctl(fd, KvmIoctl.CheckExtension, KvmIoctl.CapMaxVcpus);
        if (max <= 0) max = LibC.Ioctl(fd, KvmIoctl.CheckExtension, KvmIoctl.CapNrVcpus);
        MaxVcpus = max > 0 ? max : 4;
        VcpuMmapSize = LibC.Ioctl(fd, KvmIoctl.GetVcpuMmapSize, 0);
        if (VcpuMmapSize < sizeof(KvmRun))
            throw new HypervisorException("KVM_GET_VCPU_MMAP_SIZE failed", LibC.LastErrno);
    }

    /// <summary>True when /dev/kvm exists (it may still be unusable, e.g. by permission).</summary>
    public static bool IsPresent => File.Exists(DevicePath);

    public static KvmHypervisor Open()
    {
        int fd = LibC.Open(DevicePath, LibC.O_RDWR | LibC.O_CLOEXEC);
        if (fd < 0)
            throw new HypervisorException($"Cannot open {DevicePath}", LibC.LastErrno);
        try { return new KvmHypervisor(fd); }
        catch { LibC.Close(fd); throw; }
    }

    public IVirtualMachine CreateVm() => new KvmVm(this);

    /// <summary>The capabilities the engine uses, and whether this KVM has each (KVM_CHECK_EXTENSION).</summary>
    public IReadOnlyList<(string Name, bool Present)> Capabilities() =>
    [
        ("KVM_CAP_IRQCHIP", Has(KvmIoctl.CapIrqchip)), ("KVM_CAP_PIT2", Has(KvmIoctl.CapPit2)),
        ("KVM_CAP_IMMEDIATE_EXIT", Has(KvmIoctl.CapImmediateExit)), ("KVM_CAP_SIGNAL_MSI", Has(KvmIoctl.CapSignalMsi)),
        ("KVM_CAP_IRQ_ROUTING", Has(KvmIoctl.CapIrqRouting)), ("KVM_CAP_IRQFD", Has(KvmIoctl.CapIrqfd)),
        ("KVM_CAP_IOEVENTFD", Has(KvmIoctl.CapIoeventfd)), ("KVM_CAP_X86_USER_SPACE_MSR", Has(KvmIoctl.CapX86UserSpaceMsr)),
        ("KVM_CAP_READONLY_MEM", Has(KvmIoctl.CapReadonlyMem)),
    ];

    private bool Has(int capability) => LibC.Ioctl(_fd, KvmIoctl.CheckExtension, capability) > 0;

    /// <summary>KVM_CAP_NR_VCPUS: how many vCPUs the kernel recommends per VM.</summary>
    public int RecommendedVcpus => Math.Max(1, LibC.Ioctl(_fd, KvmIoctl.CheckExtension, KvmIoctl.CapNrVcpus));

    /// <summary>The kernel module behind /dev/kvm: kvm_intel (VT-x), kvm_amd (AMD-V), kvm_pvm (software nesting,
    /// guest kernel code emulated) or unknown.</summary>
    public static string Module() =>
        new[] { "kvm_intel", "kvm_amd", "kvm_pvm" }.FirstOrDefault(m => Directory.Exists($"/sys/module/{m}")) ?? "unknown";

    /// <summary>KVM_GET_SUPPORTED_CPUID, read once per process.</summary>
    internal KvmCpuidEntry2[] SupportedCpuid()
    {
        if (_supportedCpuid != null) return _supportedCpuid;
        // 256 is the kernel's KVM_MAX_CPUID_ENTRIES: one call, where a smaller first try costs a second (each call
        // runs CPUID for every leaf on the host, a fraction of a millisecond here).
        for (int n = 256; n <= 4096; n *= 2)
        {
            int bytes = sizeof(KvmCpuid2Header) + n * sizeof(KvmCpuidEntry2);
            byte* buffer = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
            try
            {
                ((KvmCpuid2Header*)buffer)->Nent = (uint)n;
                if (LibC.Ioctl(_fd, KvmIoctl.GetSupportedCpuid, buffer) == 0)
                {
                    int count = (int)((KvmCpuid2Header*)buffer)->Nent;
                    var entries = new ReadOnlySpan<KvmCpuidEntry2>(buffer + sizeof(KvmCpuid2Header), count).ToArray();
                    return _supportedCpuid = entries;
                }
                int errno = LibC.LastErrno;
                if (errno != 7 /* E2BIG: try a larger buffer */)
                    throw new HypervisorException("KVM_GET_SUPPORTED_CPUID failed", errno);
            }
            finally { NativeMemory.Free(buffer); }
        }
        throw new HypervisorException("KVM_GET_SUPPORTED_CPUID: too many entries");
    }

    public void Dispose() => LibC.Close(_fd);
}
