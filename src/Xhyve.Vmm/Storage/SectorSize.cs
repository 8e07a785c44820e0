namespace Xhyve.Vmm.Storage;

/// <summary>
/// The sector sizes a disk may have, one rule for the block options, image descriptors, virtio-blk and ATA disks:
/// logical sizes are powers of two from 512 bytes (as bhyve's block layer allows), physical sizes powers of two from
/// the logical size. Both stop at 64 KiB, the largest physical size virtio's physical_block_exp and ATA's IDENTIFY
/// word 106 carry for a 512-byte logical sector; a guest's own driver may accept less (Linux: up to its page size).
/// </summary>
public static class SectorSize
{
    public const int Min = 512, Max = 65536;

    public static bool IsValidLogical(int bytes) => bytes is >= Min and <= Max && (bytes & (bytes - 1)) == 0;

    public static bool IsValidPhysical(int physical, int logical) =>
        physical >= logical && physical <= Max && (physical & (physical - 1)) == 0;

    /// <summary>What is wrong with the pair, or null: a phrase to follow the option or file it came from.</summary>
    public static string? Problem(int logical, int physical)
    {
        if (!IsValidLogical(logical)) return $"the logical sector size {logical} must be a power of two from {Min} to {Max}";
        if (!IsValidPhysical(physical, logical)) return $"the physical sector size {physical} must be a power of two from the logical size {logical} to {Max}";
        return null;
    }
}
