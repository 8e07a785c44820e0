using System.Text;

namespace Xhyve.Engine.Tests.Support;

/// <summary>ISO 9660 images for the CD tests, made by xorriso (scripts/setup-debian.sh installs it) from files the
/// test names, so what a guest reads from the disc can be compared with what went in.</summary>
public static class IsoImage
{
    /// <summary>Writes an ISO 9660 image with volume id <paramref name="volumeId"/> holding <paramref name="files"/> (name,
    /// bytes) in its root directory at <paramref name="path"/>. The directory records carry ISO 9660 level 1 names
    /// ("HELLO.TXT;1"), which the test guest's directory walk reads, and xorriso's Rock Ridge entries (no Joliet), with
    /// which Linux shows the names as given.</summary>
    public static string Create(string path, string volumeId, IEnumerable<(string Name, byte[] Bytes)> files)
    {
        string source = Directory.CreateTempSubdirectory("iso-src").FullName;
        try
        {
            foreach (var (name, bytes) in files) File.WriteAllBytes(Path.Combine(source, name), bytes);
            EngineRun run;
            try
            {
                run = EngineProcess.RunProgram("xorriso", ["-as", "mkisofs", "-quiet", "-V", volumeId, "-o", path, source], timeoutSeconds: 120);
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException("xorriso is needed to build the CD tests' ISO images; scripts/setup-debian.sh installs it", e);
            }
            if (run.ExitCode != 0 || !File.Exists(path))
                throw new InvalidOperationException($"xorriso could not build {path}:\n{run}");
            return path;
        }
        finally
        {
            Directory.Delete(source, true);
        }
    }

    /// <summary>An image holding HELLO.TXT with <paramref name="text"/>.</summary>
    public static string WithHelloFile(string path, string volumeId, string text) =>
        Create(path, volumeId, [("HELLO.TXT", Encoding.ASCII.GetBytes(text))]);

    /// <summary>32-bit FNV-1a, as the test guest sums a file it read.</summary>
    public static uint Fnv1a(ReadOnlySpan<byte> bytes)
    {
        uint h = 2166136261;
        foreach (byte b in bytes) h = unchecked((h ^ b) * 16777619);
        return h;
    }
}
