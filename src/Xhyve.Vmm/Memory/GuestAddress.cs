namespace Xhyve.Vmm.Memory;

/// <summary>A guest-physical address. Arithmetic is checked: there is no operator +.</summary>
public readonly record struct GuestAddress(ulong Value)
{
    public bool TryAdd(ulong offset, out GuestAddress result)
    {
        ulong sum = unchecked(Value + offset);
        result = new GuestAddress(sum);
        return sum >= Value;
    }

    /// <summary>Adds for addresses the VMM itself chose (layout constants); overflow is a bug.</summary>
    public GuestAddress Add(ulong offset) => TryAdd(offset, out var r) ? r : throw new OverflowException($"0x{Value:X} + 0x{offset:X} overflows");

    public override string ToString() => $"0x{Value:X}";
}
