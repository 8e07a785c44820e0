namespace Xhyve.Vmm.Hypervisor.Kvm;

/// <summary>
/// Invariant TSC (CPUID 0x80000007 EDX bit 8) is advertised only where the MSR Linux checks it against agrees.
/// On AMD family 10h rev. 2 and later, Linux takes the bit as CONSTANT_TSC and then expects HWCR (MSR 0xC0010015)
/// bit 24, TscFreqSel ("the TSC counts at the P0 frequency"), to be set, and reports a firmware bug otherwise.
/// </summary>
internal static class InvariantTsc
{
    public const uint Hwcr = 0xC001_0015;
    public const ulong TscFreqSel = 1UL << 24;
    private const uint InvariantTscBit = 1u << 8;

    /// <summary>The vendor string of CPUID leaf 0 (EBX, EDX, ECX).</summary>
    public static string Vendor(KvmCpuidEntry2[] cpuid)
    {
        foreach (var e in cpuid)
            if (e.Function == 0)
            {
                Span<byte> b = stackalloc byte[12];
                BitConverter.TryWriteBytes(b, e.Ebx); BitConverter.TryWriteBytes(b[4..], e.Edx); BitConverter.TryWriteBytes(b[8..], e.Ecx);
                return System.Text.Encoding.ASCII.GetString(b);
            }
        return "";
    }

    /// <summary>True when the guest would see invariant TSC and, being AMD, Linux would check HWCR.TscFreqSel.</summary>
    public static bool NeedsTscFreqSel(KvmCpuidEntry2[] cpuid) =>
        Advertised(cpuid) && Vendor(cpuid) is "AuthenticAMD" or "HygonGenuine";

    public static bool Advertised(KvmCpuidEntry2[] cpuid) => cpuid.Any(e => e.Function == 0x8000_0007 && (e.Edx & InvariantTscBit) != 0);

    /// <summary>The CPUID with invariant TSC withdrawn when <paramref name="msrAgrees"/> is false (else unchanged).</summary>
    public static KvmCpuidEntry2[] Reconcile(KvmCpuidEntry2[] cpuid, bool msrAgrees)
    {
        if (msrAgrees || !NeedsTscFreqSel(cpuid)) return cpuid;
        var result = (KvmCpuidEntry2[])cpuid.Clone();
        for (int i = 0; i < result.Length; i++)
            if (result[i].Function == 0x8000_0007) result[i].Edx &= ~InvariantTscBit;
        return result;
    }
}
