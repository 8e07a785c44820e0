using SharpFuzz;

// The engine (control target) is Linux-only, as is KVM.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Xhyve.Fuzz;

/// <summary>
/// Fuzz harnesses for the code that reads untrusted input (docs/fuzzing.md):
///   Xhyve.Fuzz fuzz TARGET            run under afl-fuzz (SharpFuzz out-of-process: a crash of the
///                                     target process, a stack overflow included, is reported as a crash)
///   Xhyve.Fuzz replay TARGET PATH...  run files (or every file in folders) in-process: exit 1 on a crash or hang
///   Xhyve.Fuzz seeds FOLDER           write the seed corpus (FOLDER/TARGET/NAME)
///   Xhyve.Fuzz list                   the target names
/// A target throws only for a bug: the errors its code documents for bad input are caught inside it.
/// </summary>
public static class Program
{
    /// <summary>How long one input may run in replay before it counts as a hang.</summary>
    private static readonly TimeSpan ReplayTimeout = TimeSpan.FromSeconds(10);

    /// <summary>replay -v: print the expected (refused-input) errors too.</summary>
    public static bool Verbose { get; private set; }

    /// <summary>Called by a target for an error its code documents for bad input.</summary>
    public static void Expected(Exception e)
    {
        if (Verbose) Console.WriteLine($"  refused: {e.GetType().Name}: {e.Message}");
    }

    public static int Main(string[] args)
    {
        switch (args)
        {
            case ["list"]:
                foreach (var t in Targets.All.Keys) Console.WriteLine(t);
                return 0;
            case ["seeds", var folder]:
                Seeds.Write(folder);
                return 0;
            case ["fuzz", var name] when Targets.All.TryGetValue(name, out var target):
                Fuzzer.OutOfProcess.Run(stream =>
                {
                    using var buffer = new MemoryStream();
                    stream.CopyTo(buffer);
                    target(buffer.ToArray());
                });
                return 0;
            case ["replay", var name, .. var paths] when Targets.All.TryGetValue(name, out var target):
                return Replay(name, target, paths);
            case ["replay", "-v", var name, .. var paths] when Targets.All.TryGetValue(name, out var target):
                Verbose = true;
                return Replay(name, target, paths);
            default:
                Console.Error.WriteLine($"usage: Xhyve.Fuzz fuzz TARGET | replay [-v] TARGET PATH... | seeds FOLDER | list\ntargets: {string.Join(", ", Targets.All.Keys)}");
                return 2;
        }
    }

    private static int Replay(string name, Action<byte[]> target, string[] paths)
    {
        var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p, "*", SearchOption.AllDirectories).Order() : File.Exists(p) ? [p] : Enumerable.Empty<string>())
            .Where(f => !Path.GetFileName(f).StartsWith('.') && Path.GetFileName(f) != "README.txt").ToList();
        int failed = 0;
        foreach (var file in files)
        {
            var input = File.ReadAllBytes(file);
            if (Verbose) Console.WriteLine($"{file}:");
            Exception? error = null;
            var run = new Thread(() => { try { target(input); } catch (Exception e) { error = e; } }, 16 << 20) { IsBackground = true };
            run.Start();
            if (!run.Join(ReplayTimeout))
            {
                Console.WriteLine($"replay {name}: HANG (> {ReplayTimeout.TotalSeconds} s): {file}");
                failed++;
                break;   // the thread cannot be stopped; its state is unknown
            }
            if (error != null)
            {
                Console.WriteLine($"replay {name}: CRASH: {file}\n{error}");
                failed++;
            }
        }
        Console.WriteLine($"replay {name}: {files.Count} inputs, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
