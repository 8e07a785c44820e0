using System.Diagnostics;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>Runs host tools the tests use as references (gcc, gzip, xz, lz4, zstd).</summary>
internal static class HostTools
{
    public static (int ExitCode, string Stdout, string Stderr) Run(string file, string arguments, string? stdinFile = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo("/bin/sh", ["-c", stdinFile == null ? $"{file} {arguments}" : $"{file} {arguments} < '{stdinFile}'"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException($"{file} {arguments} timed out"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Compresses <paramref name="input"/> with <paramref name="tool"/> (gzip, xz, lz4, zstd) in the form the
    /// kernel build writes a bzImage payload: the compressed stream, then the uncompressed size as a little-endian
    /// uint32 (unless <paramref name="appendedSize"/> gives another; -1 appends none). <paramref name="dir"/> holds the
    /// scratch files.</summary>
    public static byte[] CompressPayload(string tool, string args, byte[] input, string dir, long appendedSize = -2)
    {
        string inPath = Path.Combine(dir, "payload.in"), outPath = Path.Combine(dir, "payload.out");
        File.WriteAllBytes(inPath, input);
        var (code, _, err) = Run(tool, $"{args} > '{outPath}'", stdinFile: inPath);
        if (code != 0) throw new InvalidOperationException($"{tool} failed: {err}");
        var compressed = File.ReadAllBytes(outPath);
        File.Delete(inPath);
        File.Delete(outPath);
        if (appendedSize == -1) return compressed;
        var withSize = new byte[compressed.Length + 4];
        compressed.CopyTo(withSize, 0);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(withSize.AsSpan(compressed.Length), (uint)(appendedSize == -2 ? input.Length : appendedSize));
        return withSize;
    }

    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "XhyvePS.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("XhyvePS.sln not found above the test directory");
    }

    /// <summary>The Debian kernel fetched by tests/linux/fetch-debian-kernel.sh (fetched on first use).</summary>
    public static string DebianKernel()
    {
        var root = RepositoryRoot();
        var (code, stdout, stderr) = Run(Path.Combine(root, "tests/linux/fetch-debian-kernel.sh"), "");
        if (code != 0) throw new InvalidOperationException($"fetch-debian-kernel.sh failed: {stderr}");
        return stdout.Trim().Split('\n').Last();
    }
}
