using System.Buffers.Binary;
using System.Diagnostics;
using Xhyve.Engine.Tests.Linux;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Boot;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>The engine the tests start is the one that ships: the NativeAOT executable (tests/EngineUnderTest.targets),
/// not the JIT apphost the engine's project reference leaves beside the tests.</summary>
public sealed class NativeAotEngineTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("aot").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void EngineUnderTest_IsANativeAotElf_ThatRunsWithoutAManagedAssemblyBesideIt()
    {
        var run = EngineProcess.Run(["-v"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal($"xhyve: {Program.Version} (XhyvePS, KVM backend, NativeAOT)", run.Stdout.Trim());

        byte[] header = new byte[20];
        using (var f = File.OpenRead(EngineProcess.Executable)) f.ReadExactly(header);
        Assert.Equal("\x7f" + "ELF", System.Text.Encoding.Latin1.GetString(header, 0, 4));
        Assert.Equal(0x3E, BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(18)));   // e_machine: EM_X86_64
        // A framework-dependent apphost cannot start without these; the native engine is the one file.
        string dir = Path.GetDirectoryName(EngineProcess.Executable)!;
        foreach (var managed in (string[])["xhyve.dll", "xhyve.runtimeconfig.json", "xhyve.deps.json"])
            Assert.False(File.Exists(Path.Combine(dir, managed)), $"{managed} beside the engine under test ({dir})");
    }

    [Fact]
    public void JitBuild_SaysJit_SoTheVersionLineTellsTheBuildsApart()
    {
        // The apphost of the library build the tests reference: what -v says when the code is not NativeAOT.
        var run = EngineProcess.RunProgram(Path.Combine(AppContext.BaseDirectory, "xhyve"), ["-v"], 60);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal($"xhyve: {Program.Version} (XhyvePS, KVM backend, JIT)", run.Stdout.Trim());
    }

    /// <summary>The native engine resolves the system's compression libraries itself (liblz4.so.1, liblzma.so.5,
    /// libzstd.so.1; zlib is linked in): the test kernel, its payload recompressed in each format, is decompressed
    /// on the host (--kernel-load=decompress fails rather than fall back). The engine is stopped once it says so.</summary>
    [SkippableTheory]
    [InlineData(PayloadCompression.Lz4, null)]
    [InlineData(PayloadCompression.Gzip, "gzip -c")]
    [InlineData(PayloadCompression.Xz, "xz --check=crc32 -1 -c")]
    [InlineData(PayloadCompression.Zstd, "zstd -c")]
    public void KernelPayload_IsDecompressedByTheNativeEngine_InEachFormat(PayloadCompression format, string? compressor)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var kernel = LinuxKernels.Find(LinuxKernel.TestKernel, out string reason);
        Skip.If(kernel == null, reason);
        byte[] original = File.ReadAllBytes(kernel.Image);
        var bz = BzImage.Parse(original, kernel.Image);
        Assert.Equal(PayloadCompression.Lz4, KernelPayload.Detect(original.AsSpan((int)bz.PayloadFileOffset, bz.PayloadLength)));   // what the repacking starts from
        string image = Path.Combine(_dir, $"bzImage-{format}");
        File.WriteAllBytes(image, compressor == null ? original : Recompressed(original, kernel.Image, compressor));

        var psi = new ProcessStartInfo(EngineProcess.Executable) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in (string[])["--verbose", "--kernel-load=decompress", "-m", "256M", "-s", "0,hostbridge", "-f", $"kexec,{image},,{kernel.CommandLine}"])
            psi.ArgumentList.Add(a);
        var said = new List<string>();
        using (var p = Process.Start(psi)!)
        {
            // The kernel line comes before any vCPU runs; a failure ends the output with the engine's message instead.
            try { for (string? line; (line = p.StandardError.ReadLine()) != null && said.Count < 100;) { said.Add(line); if (line.StartsWith("xhyve: kernel ", StringComparison.Ordinal)) break; } }
            finally { p.Kill(true); p.WaitForExit(); }
        }
        Assert.Contains($"{format} payload decompressed on the host", said.LastOrDefault() ?? "", StringComparison.Ordinal);
    }

    /// <summary>The bzImage with its payload in another format: the kernel build's form (the compressed stream, then
    /// the uncompressed size as a little-endian uint32) in place of the old one, payload_length (0x24C) to match.</summary>
    private byte[] Recompressed(byte[] bzImage, string name, string compressor)
    {
        var bz = BzImage.Parse(bzImage, name);
        string raw = Path.Combine(_dir, "payload"), packed = Path.Combine(_dir, "payload.packed");
        byte[] uncompressed = KernelPayload.Decompress(bzImage.AsSpan((int)bz.PayloadFileOffset, bz.PayloadLength), name);
        File.WriteAllBytes(raw, uncompressed);
        var run = EngineProcess.RunProgram("sh", ["-c", $"{compressor} < '{raw}' > '{packed}'"], 120);
        Assert.True(run.ExitCode == 0, $"{compressor}: {run}");
        byte[] stream = [.. File.ReadAllBytes(packed), .. BitConverter.GetBytes((uint)uncompressed.Length)];
        int start = bz.SetupBytes + bz.PayloadOffset;
        byte[] result = [.. bzImage.AsSpan(0, start), .. stream, .. bzImage.AsSpan(start + bz.PayloadLength)];
        BinaryPrimitives.WriteUInt32LittleEndian(result.AsSpan(0x24C), (uint)stream.Length);
        return result;
    }
}
