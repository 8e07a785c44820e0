namespace Xhyve.Vmm.Devices;

/// <summary>Hashes for the identities devices derive from their names or image paths (serial numbers, disk ids): the
/// same text gives the same id on every run and host, so guests keep naming the device the same way.</summary>
internal static class StableHash
{
    /// <summary>64-bit FNV-1a over the UTF-16 code units of <paramref name="text"/>.</summary>
    public static ulong Fnv1a(string text)
    {
        ulong h = 0xCBF29CE484222325;
        foreach (char ch in text) { h ^= ch; h *= 0x100000001B3; }
        return h;
    }
}
