using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Fuzz;

/// <summary>
/// Crashes the "bzimage" fuzz target found in the gzip header reader: optional header fields (FEXTRA, FNAME,
/// FCOMMENT) whose lengths run past the end of the payload were read past it and threw
/// ArgumentOutOfRangeException instead of the loader's one-line BootImageException.
/// </summary>
public sealed class KernelPayloadFuzzTests
{
    public static TheoryData<string> BzImageInputs => FuzzInputs.Names("bzimage");

    [Theory]
    [InlineData(new byte[] { 0x1F, 0x8B, 0x08, 0x04, 0, 0, 0, 0, 0, 0, 0x05 })]                           // FEXTRA: one byte of XLEN
    [InlineData(new byte[] { 0x1F, 0x8B, 0x08, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0x00, 0x41 })]               // FEXTRA runs past the end, then FNAME
    [InlineData(new byte[] { 0x1F, 0x8B, 0x08, 0x18, 0, 0, 0, 0, 0, 0, 0x41, 0x00 })]                     // FNAME ends at the end, then FCOMMENT
    [InlineData(new byte[] { 0x1F, 0x8B, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C, 0x7C })] // the fuzzer's header
    public void GzipPayload_HeaderFieldsPastTheEnd_AreRefusedAsCorrupt(byte[] payload)
    {
        var e = Assert.Throws<BootImageException>(() => KernelPayload.Decompress(payload, "k"));
        Assert.Contains("k: cannot decompress the Gzip kernel payload", e.Message);
    }

    [Theory]
    [MemberData(nameof(BzImageInputs))]
    public void FuzzCrashInput_IsBootedOrRefusedWithABootImageException(string name)
    {
        var path = Path.Combine(FuzzInputs.Folder("bzimage"), name);
        using var mem = new GuestMemory(X86Layout.RamRegions(64UL << 20));
        foreach (var mode in new[] { KernelLoadMode.Auto, KernelLoadMode.HostDecompress, KernelLoadMode.BzImage })
        {
            try { new LinuxLoader(path, null, "console=ttyS0", mode).Load(mem); }
            catch (BootImageException) { }
        }
    }
}
