namespace Xhyve.Vmm.Hypervisor.Kvm;

/// <summary>
/// Rewrites the host's supported CPUID into what one vCPU of an N-CPU VM reports: one package
/// of N cores with one thread each, APIC id = vCPU id (Intel SDM vol. 2, CPUID leaves 01H, 04H, 0BH).
/// </summary>
internal static class CpuidTopology
{
    public static KvmCpuidEntry2[] ForVcpu(KvmCpuidEntry2[] supported, int id, int count)
    {
        var result = new List<KvmCpuidEntry2>(supported.Length + 3);
        uint coreShift = (uint)Math.Max(0, (int)Math.Ceiling(Math.Log2(count)));
        bool hasLeafB = false, hasLeaf1F = false;
        foreach (var source in supported)
        {
            var e = source;
            switch (e.Function)
            {
                case 0x1:
                    e.Ebx = (e.Ebx & 0x0000_FFFF) | ((uint)id << 24) | ((uint)count << 16);
                    e.Edx = count > 1 ? e.Edx | (1u << 28) : e.Edx & ~(1u << 28); // HTT: multi-CPU package
                    e.Ecx |= 1u << 31;                                               // running under a hypervisor
                    break;
                case 0x4:
                    // Cores per package - 1 in [31:26]; one thread shares each cache in [25:14].
                    e.Eax = (e.Eax & 0x3FFF) | ((uint)(count - 1) << 26);
                    break;
                case 0xB:
                case 0x1F:
                    hasLeafB |= e.Function == 0xB;
                    hasLeaf1F |= e.Function == 0x1F;
                    continue; // rebuilt below
                case 0x8000_0008:
                    e.Ecx = (e.Ecx & ~0xFFu) | (uint)(count - 1);
                    break;
            }
            result.Add(e);
        }
        // Leaf 0BH (and 1FH, which Linux prefers when present) enumerate the same two levels.
        foreach (uint leaf in new[] { 0xBu, 0x1Fu })
        {
            if (leaf == 0xB ? !hasLeafB && !supported.Any(e => e.Function == 0 && e.Eax >= 0xB) : !hasLeaf1F)
                continue;
            const uint levelSmt = 1, levelCore = 2;
            result.Add(Leaf(leaf, 0, eax: 0, ebx: 1, ecx: (levelSmt << 8) | 0, edx: (uint)id));
            result.Add(Leaf(leaf, 1, eax: coreShift, ebx: (uint)count, ecx: (levelCore << 8) | 1, edx: (uint)id));
            result.Add(Leaf(leaf, 2, eax: 0, ebx: 0, ecx: 2, edx: (uint)id));
        }
        return result.ToArray();
    }

    private static KvmCpuidEntry2 Leaf(uint function, uint index, uint eax, uint ebx, uint ecx, uint edx) => new()
    {
        Function = function, Index = index, Flags = KvmCpuidEntry2.FlagSignificantIndex,
        Eax = eax, Ebx = ebx, Ecx = ecx, Edx = edx,
    };
}
