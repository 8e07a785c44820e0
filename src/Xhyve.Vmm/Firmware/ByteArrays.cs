namespace Xhyve.Vmm.Firmware;

/// <summary>Joins the byte arrays firmware tables are composed of.</summary>
internal static class ByteArrays
{
    /// <summary>The parts end to end, in one array of exactly their total length (one allocation, no per-byte
    /// enumeration as SelectMany/ToArray would do).</summary>
    public static byte[] Concat(ReadOnlySpan<byte[]> parts)
    {
        int length = 0;
        foreach (var part in parts) length += part.Length;
        var result = new byte[length];
        int at = 0;
        foreach (var part in parts)
        {
            part.CopyTo(result, at);
            at += part.Length;
        }
        return result;
    }
}
