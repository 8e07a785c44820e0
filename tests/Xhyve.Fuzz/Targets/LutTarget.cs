using Xhyve.Vmm.Storage;

namespace Xhyve.Fuzz;

/// <summary>
/// Opening a split/sparse image whose files come from the input, in a scratch folder. Input: sector size
/// (bit 0: 4096), disk sectors (1-256), split (0: one segment; else sectors per segment), flags (bit 0
/// read-only, bit 1 not sparse, bit 2 no LUT file, bit 3 no first segment), then per segment its stored
/// sectors (u8) and extra bytes (u8), then the LUT bytes (the rest). A refused image is a StorageException;
/// an opened one is read whole and, when writable, written and trimmed.
/// </summary>
internal static class LutTarget
{
    private const int MaxSegments = 16;

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        int sector = (input.U8() & 1) != 0 ? 4096 : 512;
        int sectors = 1 + input.U8();
        int split = input.U8();
        byte flags = input.U8();
        bool readOnly = (flags & 1) != 0, sparse = (flags & 2) == 0;
        long? splitSize = split == 0 ? null : (long)Math.Max(split, (sectors + MaxSegments - 1) / MaxSegments) * sector;
        var layout = new SplitImageLayout((long)sectors * sector, splitSize, sparse, sector);
        string path = Path.Combine(Scratch.Folder, "disk");
        Scratch.Clear();
        try
        {
            int segments = layout.SegmentCount;
            var fill = new byte[sector];
            for (int i = 0; i < segments; i++)
            {
                int stored = input.U8(), extra = input.U8();
                if (i == 0 && (flags & 8) != 0) continue;
                using var f = new FileStream(SplitSparseImage.SegmentPath(path, layout, i), FileMode.CreateNew, FileAccess.Write);
                for (int s = 0; s < stored; s++) { fill.AsSpan().Fill((byte)(s + 1)); f.Write(fill); }
                f.Write(fill.AsSpan(0, Math.Min(extra, sector)));
            }
            if (sparse && (flags & 4) == 0) Scratch.File("disk.lut", input.Rest);
            Exercise(path, layout, readOnly);
        }
        finally { Scratch.Clear(); }
    }

    private static void Exercise(string path, SplitImageLayout layout, bool readOnly)
    {
        SplitSparseImage image;
        try { image = SplitSparseImage.Open(path, layout, readOnly); }
        catch (StorageException e) { Program.Expected(e); return; }
        using (image)
        {
            var buffer = new byte[layout.Size];
            image.Read(0, buffer);
            if (readOnly) return;
            var sector = new byte[layout.SectorSize];
            sector.AsSpan().Fill(0xA5);
            image.Write(layout.Size - layout.SectorSize, sector);
            image.WriteZeroes(0, layout.SectorSize);
            image.Flush();
            image.Read(0, buffer);
            bool lastIsFirst = layout.Sectors == 1;   // then the write-zeroes replaced the written sector
            if (buffer.AsSpan(0, layout.SectorSize).ContainsAnyExcept((byte)0) || !lastIsFirst && !buffer.AsSpan((int)layout.Size - layout.SectorSize).SequenceEqual(sector))
                throw new FuzzBugException("the image does not read back what was written");
        }
    }
}
