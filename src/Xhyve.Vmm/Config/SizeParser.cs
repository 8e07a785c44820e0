using System.Globalization;

namespace Xhyve.Vmm.Config;

/// <summary>xhyve's size syntax: a number with k/m/g/t (either case, optional trailing b); for -m a
/// bare number below 1 MiB means MiB (so -m 1024 is 1 GiB, as in xhyve).</summary>
public static class SizeParser
{
    /// <param name="text">The size as written.</param>
    /// <param name="bytes">The size in bytes.</param>
    /// <param name="smallBareNumbersAreMiB">-m's rule; image sizes (size=, split=) take bare numbers as bytes.</param>
    public static bool TryParse(string text, out ulong bytes, bool smallBareNumbersAreMiB = true)
    {
        bytes = 0;
        string s = text.Trim();
        if (s.Length == 0) return false;
        if (s.EndsWith('b') || s.EndsWith('B')) s = s[..^1];
        int shift = 0;
        bool suffix = true;
        switch (s.Length > 0 ? char.ToLowerInvariant(s[^1]) : '\0')
        {
            case 'k': shift = 10; break;
            case 'm': shift = 20; break;
            case 'g': shift = 30; break;
            case 't': shift = 40; break;
            default: suffix = false; break;
        }
        if (suffix) s = s[..^1];
        else if (s.Length != text.Trim().Length) return false; // a lone trailing "b" is not a unit
        if (s.Length == 0 || !s.All(char.IsAsciiDigit)) return false;
        if (!ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)) return false;
        if (!suffix && smallBareNumbersAreMiB && n < (1UL << 20)) shift = 20;
        if (shift > 0 && n > (ulong.MaxValue >> shift)) return false;
        bytes = n << shift;
        return true;
    }
}
