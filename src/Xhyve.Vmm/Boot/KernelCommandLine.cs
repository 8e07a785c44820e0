using System.Text;

namespace Xhyve.Vmm.Boot;

/// <summary>A kernel command line, validated as it is built: printable ASCII, bounded length.</summary>
public sealed class KernelCommandLine
{
    public string Text { get; }

    public KernelCommandLine(string text, int maxLength)
    {
        foreach (char c in text)
            if (c < 0x20 || c > 0x7E)
                throw new BootImageException($"Kernel command line contains a non-printable or non-ASCII character (U+{(int)c:X4})");
        if (text.Length > maxLength)
            throw new BootImageException($"Kernel command line is {text.Length} bytes; the kernel accepts at most {maxLength}");
        Text = text;
    }

    /// <summary>The NUL-terminated bytes to place in guest memory.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[Text.Length + 1];
        Encoding.ASCII.GetBytes(Text, bytes);
        return bytes;
    }
}
