using System.Buffers.Binary;
using Xhyve.Vmm.Storage;
using Xunit.Abstractions;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>
/// Power cuts, which kill -9 cannot show (it leaves the page cache to be written): a seeded workload runs on
/// split/sparse images over <see cref="RecordingFileSystem"/>; at every point of its write/sync log a cut keeps
/// what was synced and a random subset of the rest; the image must reopen, every sector covered by a completed
/// flush must read back its data, and no sector may read anything but its durable value or a later write's.
/// </summary>
public sealed class PowerLossTests(ITestOutputHelper output)
{
    private const string Image = "/images/disk.img";

    public static TheoryData<string> Layouts => new() { "split+sparse/4096", "sparse/512", "split/512" };

    internal static SplitImageLayout LayoutOf(string name) => name switch
    {
        "split+sparse/4096" => new SplitImageLayout(Size: 256 << 10, SplitSize: 64 << 10, Sparse: true, SectorSize: 4096),
        "sparse/512" => new SplitImageLayout(Size: 32 << 10, SplitSize: null, Sparse: true, SectorSize: 512),
        "split/512" => new SplitImageLayout(Size: 32 << 10, SplitSize: 8 << 10, Sparse: false, SectorSize: 512),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void PowerCut_AtEveryPointOfTheLog_KeepsFlushedDataAndNeverShowsUnwrittenData(string layoutName)
    {
        var layout = LayoutOf(layoutName);
        int cuts = 0;
        for (int workload = 0; workload < 3; workload++)
        {
            int seed = 20261130 + 1000 * Array.IndexOf(["split+sparse/4096", "sparse/512", "split/512"], layoutName) + workload;
            var run = Workload.Run(layout, seed, operations: 60);
            var random = new Random(seed);
            for (int cut = run.CreatedAt; cut <= run.Files.Log.Count; cut++)
                for (int subset = 0; subset < 4; subset++, cuts++)
                {
                    var survivors = run.Files.SurvivorsOfCut(cut, random);
                    string? problem = run.CheckAfterCut(survivors, cut);
                    Assert.True(problem == null, $"{layoutName} workload seed {seed}, cut after log entry {cut} of {run.Files.Log.Count}: {problem}");
                }
        }
        output.WriteLine($"{layoutName}: {cuts} power cuts checked");
    }

    [Theory]
    [InlineData("split+sparse/4096")]
    [InlineData("sparse/512")]
    public void NewSector_IsWrittenThenSynced_BeforeItsLutEntry(string layoutName)
    {
        var layout = LayoutOf(layoutName);
        var run = Workload.Run(layout, seed: 7, operations: 80);
        int checkedEntries = 0;
        var firstWrite = new Dictionary<(string, long), int>();      // (segment, slot) -> log index of its first write
        var lastSync = new Dictionary<string, int>();
        var log = run.Files.Log;
        for (int i = 0; i < log.Count; i++)
        {
            var op = log[i];
            if (op.Kind == FileOpKind.DataSync) lastSync[op.Path] = i;
            if (op.Kind != FileOpKind.Write) continue;
            if (op.Path != SplitSparseImage.LutPath(Image))
            {
                for (long slot = op.Offset / layout.SectorSize; slot < (op.Offset + op.Data!.Length) / layout.SectorSize; slot++)
                    firstWrite.TryAdd((op.Path, slot), i);
                continue;
            }
            if (i < run.CreatedAt) continue;   // creation fills the whole LUT once
            // A write request enters all its new sectors in one LUT write: every entry of it is checked.
            for (int e = 0; e < op.Data!.Length; e += 4)
            {
                uint slotOf = BinaryPrimitives.ReadUInt32LittleEndian(op.Data.AsSpan(e));
                if (slotOf == SplitSparseImage.Unallocated) continue;
                long sector = (op.Offset + e) / 4;
                string segment = SplitSparseImage.SegmentPath(Image, layout, (int)(sector * layout.SectorSize / layout.SegmentSize));
                Assert.True(firstWrite.TryGetValue((segment, slotOf), out int written),
                    $"log entry {i}: the LUT entry of sector {sector} points at slot {slotOf} of {segment} before that slot was written");
                Assert.True(lastSync.GetValueOrDefault(segment, -1) > written,
                    $"log entry {i}: the LUT entry of sector {sector} is written before {segment} was synced after its data (written at entry {written})");
                checkedEntries++;
            }
        }
        Assert.True(checkedEntries > 10, $"the workload allocated only {checkedEntries} sectors");
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Flush_LeavesNoFileWithUnsyncedWrites(string layoutName)
    {
        var run = Workload.Run(LayoutOf(layoutName), seed: 11, operations: 80);
        int flushes = 0;
        foreach (var (start, end) in run.Flushes)
        {
            var dirty = new HashSet<string>();
            foreach (var op in run.Files.Log.Take(end))
                if (op.Kind is FileOpKind.Write or FileOpKind.SetLength) dirty.Add(op.Path);
                else if (op.Kind == FileOpKind.DataSync) dirty.Remove(op.Path);
            Assert.True(dirty.Count == 0, $"after the flush at log entries {start}..{end}, {string.Join(", ", dirty)} still has unsynced writes");
            flushes++;
        }
        Assert.True(flushes > 5);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void NewImage_SyncsItsFolder_SoAPowerCutCannotLoseItsFiles(string layoutName)
    {
        var files = new RecordingFileSystem();
        using (SplitSparseImage.Open(Image, LayoutOf(layoutName), readOnly: false, files)) { }
        int created = files.Log.FindLastIndex(o => o.Kind == FileOpKind.Create);
        int folderSync = files.Log.FindLastIndex(o => o.Kind == FileOpKind.SyncFolder);
        Assert.True(folderSync > created, "the image's folder is not synced after its files were created");
    }

    [Fact]
    public void WriteOfANewSector_RacingAnotherWhileItsLutEntryIsWritten_LeavesTheLutOnDiskAsInMemory()
    {
        // Without one order for the in-memory and on-disk LUT, the first write's file entry can lose to the
        // second's while its memory entry wins: later writes then go to a slot the disk's LUT does not name,
        // and are lost on reopen even though they were flushed.
        var layout = LayoutOf("sparse/512");
        const long Sector = 5;
        var files = new RecordingFileSystem();
        SplitSparseImage image = SplitSparseImage.Open(Image, layout, readOnly: false, files);
        bool raced = false;
        files.AfterWrite = op =>
        {
            if (raced || op.Path != SplitSparseImage.LutPath(Image) || op.Offset != Sector * 4) return;
            raced = true;
            image.Write(Sector * 512, Workload.Unique(512, 2, Sector));
        };
        image.Write(Sector * 512, Workload.Unique(512, 1, Sector));
        files.AfterWrite = null;
        Assert.True(raced);
        var last = Workload.Unique(512, 3, Sector);
        image.Write(Sector * 512, last);
        image.Flush();
        image.Dispose();
        using var reopened = SplitSparseImage.Open(Image, layout, readOnly: false, new RecordingFileSystem(files.SurvivorsOfCut(files.Log.Count, new Random(1))));
        var actual = new byte[512];
        reopened.Read(Sector * 512, actual);
        Assert.Equal(last, actual);
    }
}

/// <summary>A seeded sequence of writes, write-zeroes, discards, flushes and reopens on one image, with where each
/// operation's file operations start and end in the log, so a cut can be related to what had completed.</summary>
internal sealed class Workload
{
    private enum Kind { Write, Zero, Flush, Reopen }
    private sealed record Op(Kind Kind, long Sector, int Count, byte[]?[]? Data, int LogStart, int LogEnd);

    private readonly SplitImageLayout _layout;
    private readonly List<Op> _ops = new();

    public RecordingFileSystem Files { get; }
    /// <summary>Log length once the image was created (cuts before it are of an image never handed out).</summary>
    public int CreatedAt { get; private set; }
    public IEnumerable<(int Start, int End)> Flushes => _ops.Where(o => o.Kind == Kind.Flush).Select(o => (o.LogStart, o.LogEnd));

    private Workload(SplitImageLayout layout) { _layout = layout; Files = new RecordingFileSystem(tearSize: layout.SectorSize); }

    /// <summary>Sector contents no other write produces: the write's number and the sector in the first bytes.</summary>
    public static byte[] Unique(int ss, int op, long sector)
    {
        var data = new byte[ss];
        new Random(op * 1_000_003 + (int)sector).NextBytes(data);   // HashCode is seeded per process: not replayable
        BinaryPrimitives.WriteInt32LittleEndian(data, op + 1);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(4), sector);
        return data;
    }

    public static Workload Run(SplitImageLayout layout, int seed, int operations)
    {
        var w = new Workload(layout);
        var random = new Random(seed);
        int ss = layout.SectorSize;
        long sectors = layout.Sectors;
        var image = SplitSparseImage.Open("/images/disk.img", layout, readOnly: false, w.Files);
        w.CreatedAt = w.Files.Log.Count;
        for (int n = 0; n < operations; n++)
        {
            int start = w.Files.Log.Count;
            int roll = random.Next(100);
            long sector = random.NextInt64(sectors);
            int count = (int)Math.Min(1 + random.Next(8), sectors - sector);
            if (roll < 60)
            {
                // Some all-zero writes: on a sparse image they store nothing where nothing was.
                bool zero = random.Next(8) == 0;
                var data = Enumerable.Range(0, count).Select(i => zero ? new byte[ss] : Unique(ss, n, sector + i)).ToArray();
                image.Write(sector * ss, data.SelectMany(d => d).ToArray());
                w._ops.Add(new Op(Kind.Write, sector, count, data, start, w.Files.Log.Count));
            }
            else if (roll < 75)
            {
                bool discard = random.Next(2) == 0;
                if (discard) image.Discard(sector * ss, (long)count * ss);
                else image.WriteZeroes(sector * ss, (long)count * ss);
                // A discard keeps the data of a fully allocated image (allowed: the range becomes undefined).
                var data = discard && !layout.Sparse ? null : Enumerable.Range(0, count).Select(_ => new byte[ss]).ToArray();
                w._ops.Add(new Op(Kind.Zero, sector, count, data, start, w.Files.Log.Count));
            }
            else if (roll < 93)
            {
                image.Flush();
                w._ops.Add(new Op(Kind.Flush, 0, 0, null, start, w.Files.Log.Count));
            }
            else
            {
                image.Dispose();   // a close does not sync: the next cut may still lose what came before it
                image = SplitSparseImage.Open("/images/disk.img", layout, readOnly: false, w.Files);
                w._ops.Add(new Op(Kind.Reopen, 0, 0, null, start, w.Files.Log.Count));
            }
        }
        image.Dispose();
        return w;
    }

    /// <summary>What may be read from <paramref name="sector"/> after a cut after <paramref name="cut"/> log
    /// entries: the value of the last write before the last completed flush (zeroes when none), or the value
    /// of any write begun after that flush and before the cut.</summary>
    public List<byte[]> Allowed(long sector, int cut)
    {
        int flush = _ops.FindLastIndex(o => o.Kind == Kind.Flush && o.LogEnd <= cut);
        var allowed = new List<byte[]> { new byte[_layout.SectorSize] };
        for (int i = 0; i < _ops.Count; i++)
        {
            var o = _ops[i];
            if (o.Data == null || sector < o.Sector || sector >= o.Sector + o.Count || o.LogStart >= cut) continue;
            var value = o.Data[sector - o.Sector]!;
            if (i < flush) allowed[0] = value;
            else allowed.Add(value);
        }
        return allowed;
    }

    /// <summary>Reopens the image from what a cut left and checks every sector; null when all is well.</summary>
    public string? CheckAfterCut(Dictionary<string, byte[]> survivors, int cut)
    {
        SplitSparseImage image;
        try { image = SplitSparseImage.Open("/images/disk.img", _layout, readOnly: false, new RecordingFileSystem(survivors)); }
        catch (StorageException e) { return $"the image does not reopen: {e.Message}"; }
        using (image)
        {
            int ss = _layout.SectorSize;
            var actual = new byte[ss];
            for (long s = 0; s < _layout.Sectors; s++)
            {
                image.Read(s * ss, actual);
                var allowed = Allowed(s, cut);
                if (!allowed.Any(a => a.AsSpan().SequenceEqual(actual)))
                    return $"sector {s} reads {Describe(actual)}; allowed: {string.Join(", ", allowed.Select(Describe))} (first is the durable value)";
            }
        }
        return null;
    }

    private static string Describe(byte[] sector) => !sector.AsSpan().ContainsAnyExcept((byte)0) ? "zeroes"
        : $"write #{BinaryPrimitives.ReadInt32LittleEndian(sector) - 1} of sector {BinaryPrimitives.ReadInt64LittleEndian(sector.AsSpan(4))}";
}
