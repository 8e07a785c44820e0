namespace Xhyve.Vmm.Boot;

/// <summary>A kernel, initrd or module file that cannot be booted; the message names the file and the problem.</summary>
public sealed class BootImageException(string message, Exception? inner = null) : Exception(message, inner);
