using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Boot;

/// <summary>Round trips through the real compressors, in the form the kernel build writes
/// (compressed stream followed by the uncompressed size as a little-endian uint32).</summary>
public sealed class KernelPayloadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("payload").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private static byte[] SampleData()
    {
        var rng = new Random(42);
        var data = new byte[3 << 20];
        for (int i = 0; i < data.Length; i += 64) rng.NextBytes(data.AsSpan(i, Math.Min(16, data.Length - i)));
        return data;
    }

    private byte[] Compress(string tool, string args, byte[] input) => HostTools.CompressPayload(tool, args, input, _dir);

    [Theory]
    [InlineData("gzip", "-9 -c", PayloadCompression.Gzip)]
    [InlineData("xz", "--check=crc32 -c", PayloadCompression.Xz)]
    [InlineData("lz4", "-l -9 -c", PayloadCompression.Lz4)]
    [InlineData("zstd", "-19 -c", PayloadCompression.Zstd)]
    public void Payload_RoundTripsThroughTheSystemLibrary(string tool, string args, PayloadCompression format)
    {
        var data = SampleData();
        var payload = Compress(tool, args, data);
        Assert.Equal(format, KernelPayload.Detect(payload));
        Assert.Equal(data, KernelPayload.Decompress(payload, "k"));
    }

    [Theory]
    [InlineData("gzip", "-c")]
    [InlineData("xz", "-c")]
    [InlineData("lz4", "-l -c")]
    [InlineData("zstd", "-c")]
    public void CorruptPayload_IsRefusedWithAMessage(string tool, string args)
    {
        var payload = Compress(tool, args, SampleData());
        for (int i = 16; i < payload.Length - 8; i += 7) payload[i] ^= 0xA5;
        var e = Assert.ThrowsAny<BootImageException>(() => KernelPayload.Decompress(payload, "bad-kernel"));
        Assert.Contains("bad-kernel", e.Message);
    }

    [Fact]
    public void UnsupportedFormat_IsNamed()
    {
        var e = Assert.Throws<BootImageException>(() => KernelPayload.Decompress("BZh91AY&SY"u8, "k"));
        Assert.Contains("Bzip2", e.Message);
    }

    [Fact]
    public void UnknownFormat_IsRefused()
    {
        Assert.Throws<BootImageException>(() => KernelPayload.Decompress([1, 2, 3, 4, 5, 6], "k"));
    }
}
