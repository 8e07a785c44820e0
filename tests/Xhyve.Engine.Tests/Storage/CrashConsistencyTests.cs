using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xhyve.Engine.Disk;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Storage;

namespace Xhyve.Engine.Tests.Storage;

/// <summary>
/// A process writing through the sparse backend (`xhyve disk stress`) is killed with SIGKILL at random
/// points; afterwards the image must open (LUT consistent: no entry past a segment's end), every write it
/// reported durable must be intact, and every other sector must hold its old content or the content of
/// a write that was in flight.
/// </summary>
public sealed class CrashConsistencyTests
{
    private const string Options = "size=4M,split=1M,sparse,sectorsize=4096";

    [Fact]
    public async Task SparseImage_SurvivesSigkillAtRandomPoints()
    {
        var layout = DiskCommand.Options("unused", Options).SplitLayout!;
        var random = new Random(20261121);
        for (int round = 0; round < 12; round++)
        {
            string dir = Directory.CreateTempSubdirectory("crash").FullName;
            try
            {
                string image = Path.Combine(dir, "disk.img");
                int seed = random.Next();
                var psi = new ProcessStartInfo(EngineProcess.Executable) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in new[] { "disk", "stress", image, Options, seed.ToString() }) psi.ArgumentList.Add(a);
                string output;
                using (var p = Process.Start(psi)!)
                {
                    // The kill lands at a random point after the writer's first write, not after a fixed
                    // start-up time: on a loaded host the process can take longer than that to start.
                    var text = new StringBuilder();
                    var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    var stdout = Task.Run(() =>
                    {
                        while (p.StandardOutput.ReadLine() is { } line)
                        {
                            lock (text) text.AppendLine(line);
                            if (line.StartsWith("write ", StringComparison.Ordinal)) started.TrySetResult();
                        }
                        started.TrySetResult();
                    });
                    await started.Task.WaitAsync(TimeSpan.FromSeconds(60));
                    Thread.Sleep(random.Next(0, 550));
                    p.Kill();                                       // SIGKILL
                    p.WaitForExit();
                    await stdout;
                    lock (text) output = text.ToString();
                }
                Verify(image, layout, seed, output, round);
            }
            finally { Directory.Delete(dir, true); }
        }
    }

    private static void Verify(string image, SplitImageLayout layout, int seed, string output, int round)
    {
        var writes = Regex.Matches(output, @"^write (\d+) (\d+) (\d+)$", RegexOptions.Multiline)
            .Select(m => (N: long.Parse(m.Groups[1].Value), Sector: long.Parse(m.Groups[2].Value), Count: int.Parse(m.Groups[3].Value))).ToList();
        long durable = Regex.Matches(output, @"^durable (\d+)$", RegexOptions.Multiline).Select(m => long.Parse(m.Groups[1].Value)).DefaultIfEmpty(-1).Max();
        Assert.True(writes.Count > 0, $"round {round}: the writer never started:\n{output}");

        int ss = layout.SectorSize;
        var acked = new Dictionary<long, (long N, int Index)>();                // sector -> last durable writer
        var inFlight = new Dictionary<long, List<(long N, int Index)>>();       // sector -> later writers
        foreach (var w in writes)
            for (int i = 0; i < w.Count; i++)
            {
                if (w.N <= durable) acked[w.Sector + i] = (w.N, i);
                else (inFlight.TryGetValue(w.Sector + i, out var l) ? l : inFlight[w.Sector + i] = new()).Add((w.N, i));
            }

        using var img = SplitSparseImage.Open(image, layout, readOnly: true);  // refuses an inconsistent LUT
        var actual = new byte[ss];
        var pattern = new byte[8 * ss];
        byte[] Expected(long n, int index)
        {
            DiskCommand.FillPattern(pattern.AsSpan(0, writes.Single(w => w.N == n).Count * ss), seed, n);
            return pattern.AsSpan(index * ss, ss).ToArray();
        }
        foreach (long sector in acked.Keys.Union(inFlight.Keys))
        {
            img.Read(sector * ss, actual);
            var allowed = new List<byte[]> { acked.TryGetValue(sector, out var a) ? Expected(a.N, a.Index) : new byte[ss] };
            if (inFlight.TryGetValue(sector, out var later)) allowed.AddRange(later.Select(l => Expected(l.N, l.Index)));
            Assert.True(allowed.Any(x => x.AsSpan().SequenceEqual(actual)),
                $"round {round}: sector {sector} holds neither its durable content (write {(acked.ContainsKey(sector) ? acked[sector].N : -1)}) nor an in-flight write's");
        }
    }
}
