using System.Buffers.Binary;
using CsCheck;
using Xhyve.Vmm.Storage;
using Xunit.Abstractions;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>
/// Split and sparse images against a plain model (one value per sector) under random sequences of reads,
/// writes, write-zeroes, discards, flushes, reopens and power cuts (through <see cref="RecordingFileSystem"/>).
/// After a cut only what a completed flush covered is required; anything read must be that value or one
/// written since, never another sector's data or bytes nobody wrote. CsCheck prints the seed of a failing
/// run ("Set seed: ..."); replay it with the environment variable CsCheck_Seed.
/// </summary>
public sealed class SplitSparseImagePropertyTests(ITestOutputHelper output)
{
    private const string Image = "/images/prop.img";

    public static TheoryData<string> Layouts => new() { "split+sparse/4096", "sparse/512", "split+sparse/512", "split/512" };

    private static SplitImageLayout LayoutOf(string name) => name switch
    {
        "split+sparse/4096" => new SplitImageLayout(Size: 128 << 10, SplitSize: 32 << 10, Sparse: true, SectorSize: 4096),
        "sparse/512" => new SplitImageLayout(Size: 16 << 10, SplitSize: null, Sparse: true, SectorSize: 512),
        // A segment size that is no power of two, so requests cross segments at odd places.
        "split+sparse/512" => new SplitImageLayout(Size: 24 << 10, SplitSize: 5 << 9, Sparse: true, SectorSize: 512),
        "split/512" => new SplitImageLayout(Size: 16 << 10, SplitSize: 3 << 10, Sparse: false, SectorSize: 512),
        _ => throw new ArgumentException(name),
    };

    internal abstract record Op;
    internal sealed record Write(long Sector, int Count, int Seed, bool Zero) : Op;
    internal sealed record Read(long Sector, int Count) : Op;
    internal sealed record WriteZeroes(long Sector, int Count) : Op;
    internal sealed record Discard(long Sector, int Count) : Op;
    internal sealed record Flush : Op;
    internal sealed record Reopen : Op;
    internal sealed record PowerCut(int Seed) : Op;
    /// <summary>The power fails somewhere inside the write: between any two of its file operations.</summary>
    internal sealed record PowerCutDuring(Write Write, int Seed) : Op;

    private static Gen<Op> Ops(long sectors)
    {
        var range = Gen.Select(Gen.Long[0, sectors - 1], Gen.Int[1, 12], (s, c) => (Sector: s, Count: (int)Math.Min(c, sectors - s)));
        var write = Gen.Select(range, Gen.Int, Gen.Int[0, 9], (r, seed, z) => new Write(r.Sector, r.Count, seed, z == 0));
        return Gen.Frequency(
            (30, write.Select(w => (Op)w)),
            (15, range.Select(r => (Op)new Read(r.Sector, r.Count))),
            (5, range.Select(r => (Op)new WriteZeroes(r.Sector, r.Count))),
            (5, range.Select(r => (Op)new Discard(r.Sector, r.Count))),
            (8, Gen.Const((Op)new Flush())),
            (3, Gen.Const((Op)new Reopen())),
            (3, Gen.Int.Select(seed => (Op)new PowerCut(seed))),
            (3, Gen.Select(write, Gen.Int, (w, seed) => (Op)new PowerCutDuring(w, seed))));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void RandomOperations_AgreeWithAByteArrayModel_AcrossReopensAndPowerCuts(string layoutName)
    {
        var layout = LayoutOf(layoutName);
        long runs = 0, operations = 0, cuts = 0;
        Ops(layout.Sectors).List[1, 60].Sample(ops =>
        {
            var stats = new Model(layout).Run(ops);
            Interlocked.Increment(ref runs);
            Interlocked.Add(ref operations, ops.Count);
            Interlocked.Add(ref cuts, stats);
        }, iter: 400, threads: 1, writeLine: output.WriteLine, print: ops => string.Join("; ", ops));
        output.WriteLine($"{layoutName}: {runs} sequences, {operations} operations, {cuts} power cuts");
    }

    /// <summary>The image, its files, and what each sector may hold.</summary>
    private sealed class Model(SplitImageLayout layout)
    {
        private readonly int _ss = layout.SectorSize;
        private readonly byte[][] _durable = Enumerable.Range(0, (int)layout.Sectors).Select(_ => new byte[layout.SectorSize]).ToArray();
        // Values written since the last completed flush, oldest first: after a cut any of them may be there.
        private readonly List<byte[]>[] _pending = Enumerable.Range(0, (int)layout.Sectors).Select(_ => new List<byte[]>()).ToArray();
        private RecordingFileSystem _files = new(tearSize: layout.SectorSize);
        private SplitSparseImage _image = null!;

        private byte[] Current(long s) => _pending[s].Count > 0 ? _pending[s][^1] : _durable[s];

        /// <summary>Runs the sequence, throwing on the first disagreement; returns the number of power cuts.</summary>
        public int Run(List<Op> ops)
        {
            int cuts = 0;
            _image = SplitSparseImage.Open(Image, layout, readOnly: false, _files);
            try
            {
                for (int i = 0; i < ops.Count; i++)
                {
                    try { Apply(ops[i], i); }
                    catch (Exception e) when (e is not PropertyFailure) { throw new PropertyFailure($"operation {i} ({ops[i]}) threw: {e}"); }
                    if (ops[i] is PowerCut or PowerCutDuring) cuts++;
                }
                ReadAll("at the end");
            }
            finally { _image.Dispose(); }
            return cuts;
        }

        private void Apply(Op op, int index)
        {
            switch (op)
            {
                case Write w:
                    var data = new byte[w.Count * _ss];
                    for (int i = 0; i < w.Count && !w.Zero; i++) Fill(data.AsSpan(i * _ss, _ss), w.Seed, index, w.Sector + i);
                    _image.Write(w.Sector * _ss, data);
                    for (int i = 0; i < w.Count; i++) _pending[w.Sector + i].Add(data.AsSpan(i * _ss, _ss).ToArray());
                    break;
                case Read r:
                    var buffer = new byte[r.Count * _ss];
                    _image.Read(r.Sector * _ss, buffer);
                    for (int i = 0; i < r.Count; i++)
                        Expect(r.Sector + i, buffer.AsSpan(i * _ss, _ss), [Current(r.Sector + i)], $"read by operation {index}");
                    break;
                case WriteZeroes z:
                    _image.WriteZeroes(z.Sector * _ss, (long)z.Count * _ss);
                    for (int i = 0; i < z.Count; i++) _pending[z.Sector + i].Add(new byte[_ss]);
                    break;
                case Discard d:
                    _image.Discard(d.Sector * _ss, (long)d.Count * _ss);
                    // Sparse images unmap (reads give zeroes); fully allocated ones keep the data, as the engine documents.
                    if (layout.Sparse)
                        for (int i = 0; i < d.Count; i++) _pending[d.Sector + i].Add(new byte[_ss]);
                    break;
                case Flush:
                    _image.Flush();
                    for (long s = 0; s < layout.Sectors; s++) { _durable[s] = Current(s); _pending[s].Clear(); }
                    break;
                case Reopen:
                    _image.Dispose();     // the page cache keeps everything: nothing may change
                    _image = SplitSparseImage.Open(Image, layout, readOnly: false, _files);
                    ReadAll($"after the reopen of operation {index}");
                    break;
                case PowerCut c:
                    CutAndReopen(_files.Log.Count, new Random(c.Seed), index);
                    break;
                case PowerCutDuring d:
                    int start = _files.Log.Count;
                    Apply(d.Write, index);      // its values become allowed, as for a write in flight
                    var random = new Random(d.Seed);
                    CutAndReopen(start + random.Next(_files.Log.Count - start + 1), random, index);
                    break;
            }
        }

        private void CutAndReopen(int cut, Random random, int index)
        {
            _image.Dispose();
            _files = new RecordingFileSystem(_files.SurvivorsOfCut(cut, random), layout.SectorSize);
            _image = SplitSparseImage.Open(Image, layout, readOnly: false, _files);
            var sector = new byte[_ss];
            for (long s = 0; s < layout.Sectors; s++)
            {
                _image.Read(s * _ss, sector);
                Expect(s, sector, [_durable[s], .. _pending[s]], $"after the power cut of operation {index}");
                // What survived is on disk now: the new durable value.
                _durable[s] = sector.ToArray();
                _pending[s].Clear();
            }
        }

        private void ReadAll(string when)
        {
            var sector = new byte[_ss];
            for (long s = 0; s < layout.Sectors; s++)
            {
                _image.Read(s * _ss, sector);
                Expect(s, sector, [Current(s)], when);
            }
        }

        private static void Expect(long sector, ReadOnlySpan<byte> actual, byte[][] allowed, string when)
        {
            foreach (var a in allowed) if (actual.SequenceEqual(a)) return;
            throw new PropertyFailure($"sector {sector} {when}: reads {Describe(actual)}; allowed {string.Join(", ", allowed.Select(a => Describe(a)))}");
        }

        /// <summary>Contents that name the operation and sector that wrote them, so a misplaced sector is told apart.</summary>
        private static void Fill(Span<byte> sector, int seed, int op, long s)
        {
            new Random(seed ^ (int)s).NextBytes(sector);
            BinaryPrimitives.WriteInt32LittleEndian(sector, op + 1);
            BinaryPrimitives.WriteInt64LittleEndian(sector[4..], s);
        }

        private static string Describe(ReadOnlySpan<byte> sector) => !sector.ContainsAnyExcept((byte)0) ? "zeroes"
            : $"[op {BinaryPrimitives.ReadInt32LittleEndian(sector) - 1}, sector {BinaryPrimitives.ReadInt64LittleEndian(sector[4..])}, {Convert.ToHexString(sector[12..16])}]";
    }

    private sealed class PropertyFailure(string message) : Exception(message);
}
