namespace Xhyve.Vmm.Hypervisor;

/// <summary>The host hypervisor refused or failed an operation (a host problem, never a guest one).</summary>
public sealed class HypervisorException : Exception
{
    public int Errno { get; }
    public HypervisorException(string message, int errno = 0)
        : base(errno != 0 ? $"{message}: {Native.LibC.StrError(errno)} (errno {errno})" : message) => Errno = errno;
}
