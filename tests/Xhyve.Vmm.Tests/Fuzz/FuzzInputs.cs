using System.Runtime.CompilerServices;

namespace Xhyve.Vmm.Tests.Fuzz;

/// <summary>The inputs fuzzing found crashes with (tests/Xhyve.Vmm.Tests/Fuzz/Inputs/TARGET/NAME, docs/fuzzing.md), read
/// from the source tree; bench/fuzz.sh replays the same files through the harnesses.</summary>
internal static class FuzzInputs
{
    public static string Folder(string target, [CallerFilePath] string here = "") =>
        Path.Combine(Path.GetDirectoryName(here)!, "Inputs", target);

    /// <summary>xUnit theory data: the file names of one target's inputs.</summary>
    public static TheoryData<string> Names(string target)
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.EnumerateFiles(Folder(target)).Order()) data.Add(Path.GetFileName(f));
        return data;
    }

    public static byte[] Read(string target, string name) => File.ReadAllBytes(Path.Combine(Folder(target), name));
}
