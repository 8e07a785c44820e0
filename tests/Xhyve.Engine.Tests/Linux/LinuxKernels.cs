using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Linux;

/// <summary>A Linux kernel the Linux tests boot: its image, the parameters it needs on this host, and its
/// build configuration (to tell what it was built with), or the reason it cannot run here.</summary>
public sealed record LinuxKernel(string Kind, string Image, string CommandLine, string Config, string? ModuleTree)
{
    /// <summary>The small Linux 6.1 built for software-nested hosts (../shared/linux-testkernel): runs everywhere.</summary>
    public const string TestKernel = "test-kernel";

    /// <summary>The test kernel rebuilt with CONFIG_X86_X2APIC (tests/linux/build-x2apic-kernel.sh, run by the setup script).</summary>
    public const string TestKernelX2Apic = "test-kernel-x2apic";

    /// <summary>Debian's stock cloud kernel with its modules: reaches userspace only with VT-x/AMD-V.</summary>
    public const string Debian = "debian";

    public bool Has(string option) => Regex.IsMatch(Config, $"^CONFIG_{option}=[ym]", RegexOptions.Multiline);
}

/// <summary>Finds the kernels for the Linux tests. The test kernel comes from $XHYVE_TEST_KERNEL (a bzImage with
/// cmdline.txt and config beside it), else the project's sibling ../shared/linux-testkernel, else
/// .cache/linux/testkernel; Debian's kernel from tests/linux/fetch-debian-kernel.sh.</summary>
public static class LinuxKernels
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, (LinuxKernel? Kernel, string Reason)> Found = [];

    /// <summary>The kernel of that kind, or null with the reason it cannot run on this host.</summary>
    public static LinuxKernel? Find(string kind, out string reason)
    {
        lock (Gate)
        {
            if (!Found.TryGetValue(kind, out var entry))
            {
                entry = kind switch
                {
                    LinuxKernel.TestKernel => FindTestKernel(),
                    LinuxKernel.TestKernelX2Apic => FindX2ApicKernel(),
                    LinuxKernel.Debian => FindDebianKernel(),
                    _ => (null, $"unknown kernel kind '{kind}'"),
                };
                Found[kind] = entry;
            }
            reason = entry.Reason;
            return entry.Kernel;
        }
    }

    private static (LinuxKernel?, string) FindTestKernel()
    {
        string? fromEnv = Environment.GetEnvironmentVariable("XHYVE_TEST_KERNEL");
        string[] candidates = fromEnv is { Length: > 0 }
            ? [fromEnv]
            : [Path.Combine(EngineProcess.Root, "..", "shared", "linux-testkernel", "bzImage"),
               Path.Combine(EngineProcess.Root, ".cache", "linux", "testkernel", "bzImage")];
        foreach (string image in candidates.Select(Path.GetFullPath))
        {
            if (!File.Exists(image)) continue;
            return FromFolder(LinuxKernel.TestKernel, image) is { } kernel
                ? (kernel, "") : (null, $"the test kernel {image} has no cmdline.txt beside it (its required parameters)");
        }
        return (null, $"no Linux test kernel: set XHYVE_TEST_KERNEL to a bzImage (with cmdline.txt beside it), or put one at {string.Join(" or ", candidates.Select(Path.GetFullPath))}");
    }

    private static (LinuxKernel?, string) FindX2ApicKernel()
    {
        string image = Path.GetFullPath(Environment.GetEnvironmentVariable("XHYVE_TEST_KERNEL_X2APIC") is { Length: > 0 } fromEnv
            ? fromEnv : Path.Combine(EngineProcess.Root, ".cache", "linux", "testkernel-x2apic", "bzImage"));
        return File.Exists(image) && FromFolder(LinuxKernel.TestKernelX2Apic, image) is { } kernel
            ? (kernel, "") : (null, $"no x2APIC test kernel at {image}: tests/linux/build-x2apic-kernel.sh builds it (scripts/setup-debian.sh runs it)");
    }

    /// <summary>A test kernel as build.sh lays it out: the image with its cmdline.txt (required) and config beside it.</summary>
    private static LinuxKernel? FromFolder(string kind, string image)
    {
        string dir = Path.GetDirectoryName(image)!;
        string cmdline = Path.Combine(dir, "cmdline.txt"), config = Path.Combine(dir, "config");
        if (!File.Exists(cmdline)) return null;
        return new LinuxKernel(kind, image, File.ReadAllText(cmdline).Trim(), File.Exists(config) ? File.ReadAllText(config) : "", null);
    }

    private static (LinuxKernel?, string) FindDebianKernel()
    {
        if (!HostHasHardwareVirtualization(out string reason)) return (null, reason);
        var fetch = EngineProcess.RunProgram(Path.Combine(EngineProcess.Root, "tests/linux/fetch-debian-kernel.sh"), [], 300);
        if (fetch.ExitCode != 0) return (null, $"fetch-debian-kernel.sh failed: {fetch.Stderr.Trim()}");
        string image = fetch.Stdout.Trim().Split('\n').Last();
        string cache = Path.GetDirectoryName(image)!;
        string config = Directory.GetFiles(cache, "config-*").Select(File.ReadAllText).FirstOrDefault() ?? "";
        string modules = Path.Combine(cache, "lib-modules");
        return (new LinuxKernel(LinuxKernel.Debian, image, "console=ttyS0 loglevel=4 panic=-1", config,
            Directory.Exists(modules) ? modules : null), "");
    }

    /// <summary>True where guest kernel code runs on VT-x/AMD-V rather than kvm_pvm's instruction emulator.</summary>
    public static bool HostHasHardwareVirtualization(out string reason)
    {
        if (Directory.Exists("/sys/module/kvm_pvm"))
        {
            reason = "the host KVM is kvm_pvm (software nesting emulates guest kernel code; Debian's stock kernel stops in early boot); Debian's kernel runs these tests only with VT-x or AMD-V";
            return false;
        }
        string cpuinfo = File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : "";
        if (!Regex.IsMatch(cpuinfo, @"\b(vmx|svm)\b"))
        {
            reason = "the host CPU shows neither vmx nor svm; Debian's kernel needs hardware virtualization";
            return false;
        }
        reason = "";
        return true;
    }
}
