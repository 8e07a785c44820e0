using System.Buffers.Binary;
using System.IO.Compression;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Boot;

public enum PayloadCompression { Unknown, Gzip, Xz, Lz4, Zstd, Bzip2, Lzma, Lzo }

/// <summary>
/// Host-side decompression of a bzImage payload (the compressed vmlinux), so the guest does not
/// run its own decompressor. Formats are recognised by magic, as boot.rst asks of payload users.
/// </summary>
public static class KernelPayload
{
    /// <summary>Upper bound of a decompressed kernel; the kernel build appends the real size.</summary>
    public const int MaxDecompressedSize = 512 << 20;

    public static PayloadCompression Detect(ReadOnlySpan<byte> p)
    {
        if (p.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B])) return PayloadCompression.Gzip;
        if (p.StartsWith((ReadOnlySpan<byte>)[0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0x00])) return PayloadCompression.Xz;
        if (p.StartsWith((ReadOnlySpan<byte>)[0x02, 0x21, 0x4C, 0x18])) return PayloadCompression.Lz4;
        if (p.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD])) return PayloadCompression.Zstd;
        if (p.StartsWith("BZh"u8)) return PayloadCompression.Bzip2;
        if (p.StartsWith((ReadOnlySpan<byte>)[0x5D, 0x00, 0x00])) return PayloadCompression.Lzma;
        if (p.StartsWith((ReadOnlySpan<byte>)[0x89, 0x4C, 0x5A, 0x4F])) return PayloadCompression.Lzo;
        return PayloadCompression.Unknown;
    }

    /// <summary>Decompresses <paramref name="payload"/>; throws <see cref="BootImageException"/> naming
    /// <paramref name="name"/> when the format is unsupported or the data is corrupt.</summary>
    public static byte[] Decompress(ReadOnlySpan<byte> payload, string name)
    {
        var format = Detect(payload);
        try
        {
            return format switch
            {
                PayloadCompression.Gzip => Gzip(payload),
                PayloadCompression.Xz => Xz(payload, name),
                PayloadCompression.Lz4 => Lz4Legacy(payload, name),
                PayloadCompression.Zstd => Zstd(payload, name),
                PayloadCompression.Unknown => throw new BootImageException($"{name}: kernel payload compression not recognised"),
                _ => throw new BootImageException($"{name}: kernel payload is {format}-compressed; host decompression supports gzip, xz, lz4 and zstd"),
            };
        }
        catch (Exception e) when (e is InvalidDataException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new BootImageException($"{name}: cannot decompress the {format} kernel payload: {e.Message}", e);
        }
    }

    /// <summary>The kernel build appends the decompressed size as a little-endian uint32 (size_append).</summary>
    private static int SizeHint(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 8) return 0;
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(payload[^4..]);
        return size is > 0 and <= MaxDecompressedSize ? (int)size : 0;
    }

    private static byte[] Gzip(ReadOnlySpan<byte> payload)
    {
        // Read one gzip member through DeflateStream: the appended size would be taken as a second member.
        int flags = payload.Length > 10 ? payload[3] : throw new InvalidDataException("truncated gzip header");
        int pos = 10;
        // Every optional field is checked against the payload before it is read (a corrupt header is refused, not
        // read past its end: found by fuzzing, tests/Xhyve.Vmm.Tests/Fuzz).
        if ((flags & 0x04) != 0)
            pos = payload.Length - pos >= 2 ? pos + 2 + BinaryPrimitives.ReadUInt16LittleEndian(payload[pos..]) : throw new InvalidDataException("truncated gzip header");
        if ((flags & 0x08) != 0) pos = SkipZeroTerminated(payload, pos);
        if ((flags & 0x10) != 0) pos = SkipZeroTerminated(payload, pos);
        if ((flags & 0x02) != 0) pos += 2;
        if (pos >= payload.Length) throw new InvalidDataException("truncated gzip header");
        using var input = new MemoryStream(payload[pos..].ToArray(), writable: false);
        using var deflate = new DeflateStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream(Math.Max(SizeHint(payload), 1 << 20));
        CopyBounded(deflate, output);
        return output.ToArray();
    }

    private static int SkipZeroTerminated(ReadOnlySpan<byte> data, int pos)
    {
        if (pos >= data.Length) throw new InvalidDataException("truncated gzip header");
        int nul = data[pos..].IndexOf((byte)0);
        if (nul < 0) throw new InvalidDataException("truncated gzip header");
        return pos + nul + 1;
    }

    private static void CopyBounded(Stream source, Stream destination)
    {
        var buffer = new byte[1 << 20];
        int n;
        while ((n = source.Read(buffer)) > 0)
        {
            if (destination.Length + n > MaxDecompressedSize)
                throw new InvalidDataException($"decompressed kernel exceeds {MaxDecompressedSize >> 20} MiB");
            destination.Write(buffer, 0, n);
        }
    }

    private static unsafe byte[] Xz(ReadOnlySpan<byte> payload, string name)
    {
        int capacity = SizeHint(payload) is > 0 and var hint ? hint : 64 << 20;
        while (true)
        {
            var output = new byte[capacity];
            ulong memlimit = ulong.MaxValue;
            nuint inPos = 0, outPos = 0;
            int rc;
            fixed (byte* i = payload)
            fixed (byte* o = output)
                rc = Compression.LzmaStreamBufferDecode(&memlimit, 0, 0, i, &inPos, (nuint)payload.Length, o, &outPos, (nuint)output.Length);
            if (rc == Compression.LzmaOk || rc == Compression.LzmaStreamEnd)
                return output.AsSpan(0, (int)outPos).ToArray();
            if (rc == Compression.LzmaBufError && (nuint)capacity == outPos && capacity < MaxDecompressedSize)
            {
                capacity = Math.Min(capacity * 2, MaxDecompressedSize);
                continue;
            }
            throw new BootImageException($"{name}: xz payload is corrupt (liblzma error {rc})");
        }
    }

    /// <summary>The LZ4 "legacy" frame the kernel build writes (lz4 -l): magic, then blocks of
    /// [uint32 compressed size][data], each decompressing to at most 8 MiB.</summary>
    private static unsafe byte[] Lz4Legacy(ReadOnlySpan<byte> payload, string name)
    {
        const int blockMax = 8 << 20;
        const uint magic = 0x184C_2102;
        int hint = SizeHint(payload);
        var output = new byte[hint > 0 ? hint + blockMax : 64 << 20];
        int outPos = 0, pos = 4;
        while (pos + 4 <= payload.Length)
        {
            uint blockSize = BinaryPrimitives.ReadUInt32LittleEndian(payload[pos..]);
            if (blockSize == magic) { pos += 4; continue; }       // concatenated frames
            // The trailing size word (or anything not followed by a whole block) ends the stream.
            if (blockSize == 0 || blockSize > (uint)(payload.Length - pos - 4)) break;
            pos += 4;
            if (output.Length - outPos < blockMax)
            {
                if (output.Length >= MaxDecompressedSize) throw new BootImageException($"{name}: decompressed kernel exceeds {MaxDecompressedSize >> 20} MiB");
                Array.Resize(ref output, Math.Min(Math.Max(output.Length * 2, outPos + blockMax), MaxDecompressedSize));
            }
            int n;
            fixed (byte* s = payload[pos..])
            fixed (byte* d = output.AsSpan(outPos))
                n = Compression.Lz4DecompressSafe(s, d, (int)blockSize, Math.Min(blockMax, output.Length - outPos));
            if (n < 0) throw new BootImageException($"{name}: lz4 payload is corrupt (block at offset {pos - 4})");
            outPos += n;
            pos += (int)blockSize;
        }
        if (outPos == 0) throw new BootImageException($"{name}: lz4 payload holds no data");
        return output.AsSpan(0, outPos).ToArray();
    }

    private static unsafe byte[] Zstd(ReadOnlySpan<byte> payload, string name)
    {
        fixed (byte* s = payload)
        {
            nuint frame = Compression.ZstdFindFrameCompressedSize(s, (nuint)payload.Length);
            if (Compression.ZstdIsError(frame) != 0)
                throw new BootImageException($"{name}: zstd payload is corrupt ({Compression.ZstdErrorName(frame)})");
            int capacity = SizeHint(payload) is > 0 and var hint ? hint : 64 << 20;
            while (true)
            {
                var output = new byte[capacity];
                nuint n;
                fixed (byte* d = output) n = Compression.ZstdDecompress(d, (nuint)output.Length, s, frame);
                if (Compression.ZstdIsError(n) == 0) return output.AsSpan(0, (int)n).ToArray();
                string error = Compression.ZstdErrorName(n);
                if (error.Contains("too small", StringComparison.OrdinalIgnoreCase) && capacity < MaxDecompressedSize)
                {
                    capacity = Math.Min(capacity * 2, MaxDecompressedSize);
                    continue;
                }
                throw new BootImageException($"{name}: zstd payload is corrupt ({error})");
            }
        }
    }
}
