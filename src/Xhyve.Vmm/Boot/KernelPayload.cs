using System.Buffers.Binary;
using System.IO.Compression;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Boot;

public enum PayloadCompression { Unknown, Gzip, Xz, Lz4, Zstd, Bzip2, Lzma, Lzo, Uncompressed }

/// <summary>
/// Host-side decompression of a bzImage payload (the compressed vmlinux), so the guest does not
/// run its own decompressor. Formats are recognised by magic, as boot.rst asks of payload users.
/// The payload is decoded as a stream (<see cref="Open"/>): the loader writes each ELF segment straight into guest RAM
/// as it comes out, so no buffer of the decompressed kernel exists, let alone outlives the boot (issue 16).
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

    /// <summary>A reader of the decompressed payload in <paramref name="compressed"/> (seekable, read from its
    /// start, not owned). Throws <see cref="BootImageException"/> naming <paramref name="name"/> when the format is
    /// unsupported; its reads throw one when the data is corrupt.</summary>
    public static PayloadReader Open(Stream compressed, string name)
    {
        Span<byte> magic = stackalloc byte[6];
        int n = compressed.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false);
        compressed.Position = 0;
        var format = Detect(magic[..n]);
        int declared = DeclaredSize(compressed);
        try
        {
            return format switch
            {
                PayloadCompression.Gzip => new GzipReader(compressed, name, declared),
                PayloadCompression.Xz => new XzReader(compressed, name, declared),
                PayloadCompression.Lz4 => new Lz4LegacyReader(compressed, name, declared),
                PayloadCompression.Zstd => new ZstdReader(compressed, name, declared),
                PayloadCompression.Unknown => throw new BootImageException($"{name}: kernel payload compression not recognised"),
                _ => throw new BootImageException($"{name}: kernel payload is {format}-compressed; host decompression supports gzip, xz, lz4 and zstd"),
            };
        }
        catch (Exception e) when (e is InvalidDataException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new BootImageException($"{name}: cannot decompress the {format} kernel payload: {e.Message}", e);
        }
    }

    /// <summary>Decompresses the whole of <paramref name="payload"/> into an array, for tools and tests that want
    /// the vmlinux bytes; the loader streams instead (<see cref="Open"/>).</summary>
    public static byte[] Decompress(ReadOnlySpan<byte> payload, string name)
    {
        using var input = new MemoryStream(payload.ToArray(), writable: false);
        using var reader = Open(input, name);
        using var output = new MemoryStream();
        var buffer = new byte[1 << 16];
        int n;
        while ((n = reader.Read(buffer)) > 0) output.Write(buffer, 0, n);
        return output.ToArray();
    }

    /// <summary>The kernel build appends the decompressed size as a little-endian uint32 (size_append); 0 when the
    /// payload has none that is plausible.</summary>
    private static int DeclaredSize(Stream payload)
    {
        if (payload.Length < 8) return 0;
        Span<byte> last = stackalloc byte[4];
        payload.Position = payload.Length - 4;
        int n = payload.ReadAtLeast(last, 4, throwOnEndOfStream: false);
        payload.Position = 0;
        uint size = n == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(last) : 0;
        return size is > 0 and <= MaxDecompressedSize ? (int)size : 0;
    }

    /// <summary>An uncompressed image (an ELF vmlinux or multiboot kernel file) read through the same interface.</summary>
    internal static PayloadReader Uncompressed(Stream file, string name) => new UncompressedReader(file, name);

    private sealed class UncompressedReader(Stream file, string name) : PayloadReader(name, PayloadCompression.Uncompressed, 0)
    {
        protected override int ReadCore(Span<byte> destination) => file.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
    }

    private sealed class GzipReader : PayloadReader
    {
        private readonly DeflateStream _deflate;

        public GzipReader(Stream input, string name, int declared) : base(name, PayloadCompression.Gzip, declared)
        {
            // One gzip member through DeflateStream: the appended size would be taken as a second member. Every optional
            // header field is checked against the payload before it is skipped (a corrupt header is refused, not read
            // past its end: found by fuzzing, tests/Xhyve.Vmm.Tests/Fuzz).
            Span<byte> header = stackalloc byte[10];
            if (input.Length <= 10 || input.ReadAtLeast(header, 10, throwOnEndOfStream: false) != 10) throw Truncated();
            int flags = header[3];
            if ((flags & 0x04) != 0)
            {
                Span<byte> xlen = stackalloc byte[2];
                if (input.ReadAtLeast(xlen, 2, throwOnEndOfStream: false) != 2) throw Truncated();
                input.Position += BinaryPrimitives.ReadUInt16LittleEndian(xlen);
            }
            if ((flags & 0x08) != 0) SkipZeroTerminated(input);
            if ((flags & 0x10) != 0) SkipZeroTerminated(input);
            if ((flags & 0x02) != 0) input.Position += 2;
            if (input.Position >= input.Length) throw Truncated();
            _deflate = new DeflateStream(input, CompressionMode.Decompress, leaveOpen: true);
        }

        private static InvalidDataException Truncated() => new("truncated gzip header");

        private static void SkipZeroTerminated(Stream input)
        {
            if (input.Position >= input.Length) throw Truncated();
            int b;
            while ((b = input.ReadByte()) != 0)
                if (b < 0) throw Truncated();
        }

        protected override int ReadCore(Span<byte> destination) => _deflate.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);

        public override void Dispose() => _deflate.Dispose();
    }

    /// <summary>xz through liblzma's stream decoder, fed from a small input window.</summary>
    private sealed unsafe class XzReader : PayloadReader
    {
        private readonly Stream _input;
        private readonly ScratchBuffer _window = new(InputWindow);
        private Compression.LzmaStream* _stream;
        private bool _inputEnded, _finished;

        public XzReader(Stream input, string name, int declared) : base(name, PayloadCompression.Xz, declared)
        {
            _input = input;
            // In native memory: liblzma keeps pointers into its own state, which a managed object could move under.
            _stream = (Compression.LzmaStream*)System.Runtime.InteropServices.NativeMemory.AllocZeroed((nuint)sizeof(Compression.LzmaStream));
            int rc;
            try { rc = Compression.LzmaStreamDecoder(_stream, ulong.MaxValue, 0); }
            catch { Dispose(); throw; }   // liblzma missing: nothing may leak
            if (rc != Compression.LzmaOk) { Dispose(); throw new BootImageException($"{name}: xz decoder cannot start (liblzma error {rc})"); }
        }

        protected override int ReadCore(Span<byte> destination)
        {
            if (_finished) return 0;
            fixed (byte* output = destination)
            {
                _stream->NextOut = output;
                _stream->AvailOut = (nuint)destination.Length;
                while (_stream->AvailOut > 0)
                {
                    if (_stream->AvailIn == 0 && !_inputEnded)
                    {
                        int n = _input.Read(_window.Span);
                        _inputEnded = n == 0;
                        _stream->NextIn = _window.Pointer;
                        _stream->AvailIn = (nuint)n;
                    }
                    // LZMA_FINISH once the input is all given: a stream cut short then ends in LZMA_BUF_ERROR.
                    int rc = Compression.LzmaCode(_stream, _inputEnded ? Compression.LzmaFinish : Compression.LzmaRun);
                    if (rc == Compression.LzmaStreamEnd) { _finished = true; break; }
                    if (rc != Compression.LzmaOk)
                        throw new BootImageException($"{Name}: xz payload is corrupt (liblzma error {rc}{(rc == Compression.LzmaBufError ? ": truncated" : "")})");
                }
                int produced = destination.Length - (int)_stream->AvailOut;
                _stream->NextOut = null;
                _stream->AvailOut = 0;
                return produced;
            }
        }

        public override void Dispose()
        {
            if (_stream != null)
            {
                Compression.LzmaEnd(_stream);
                System.Runtime.InteropServices.NativeMemory.Free(_stream);
                _stream = null;
            }
            _window.Dispose();
        }
    }

    /// <summary>zstd through libzstd's streaming decoder (ZSTD_decompressStream), fed from a small input window. The
    /// decoder keeps the frame's window (at most its content size) until disposed.</summary>
    private sealed unsafe class ZstdReader : PayloadReader
    {
        private readonly Stream _input;
        private readonly ScratchBuffer _window = new(InputWindow);
        private nint _stream;
        private Compression.ZstdBuffer _in;
        private bool _inputEnded, _finished;

        public ZstdReader(Stream input, string name, int declared) : base(name, PayloadCompression.Zstd, declared)
        {
            _input = input;
            try { _stream = Compression.ZstdCreateDStream(); }
            catch { Dispose(); throw; }   // libzstd missing: nothing may leak
            if (_stream == 0) { Dispose(); throw new BootImageException($"{name}: zstd decoder cannot start"); }
            nuint rc = Compression.ZstdInitDStream(_stream);
            if (Compression.ZstdIsError(rc) != 0) { Dispose(); throw new BootImageException($"{name}: zstd decoder cannot start ({Compression.ZstdErrorName(rc)})"); }
            _in.Data = _window.Pointer;
        }

        protected override int ReadCore(Span<byte> destination)
        {
            if (_finished) return 0;
            fixed (byte* output = destination)
            {
                var @out = new Compression.ZstdBuffer { Data = output, Size = (nuint)destination.Length };
                while (@out.Pos < @out.Size)
                {
                    if (_in.Pos == _in.Size && !_inputEnded)
                    {
                        int n = _input.Read(_window.Span);
                        _inputEnded = n == 0;
                        (_in.Size, _in.Pos) = ((nuint)n, 0);
                    }
                    nuint outBefore = @out.Pos, inBefore = _in.Pos;
                    nuint rc;
                    fixed (Compression.ZstdBuffer* input = &_in) rc = Compression.ZstdDecompressStream(_stream, &@out, input);
                    if (Compression.ZstdIsError(rc) != 0) throw new BootImageException($"{Name}: zstd payload is corrupt ({Compression.ZstdErrorName(rc)})");
                    if (rc == 0) { _finished = true; break; }   // the frame is decoded and flushed: the size word follows
                    if (_inputEnded && @out.Pos == outBefore && _in.Pos == inBefore)
                        throw new BootImageException($"{Name}: zstd payload is corrupt (the frame is truncated)");
                }
                return (int)@out.Pos;
            }
        }

        public override void Dispose()
        {
            if (_stream != 0) Compression.ZstdFreeDStream(_stream);
            _stream = 0;
            _window.Dispose();
        }
    }

    /// <summary>The LZ4 "legacy" frame the kernel build writes (lz4 -l): magic, then blocks of
    /// [uint32 compressed size][data], each decompressing on its own to at most 8 MiB.</summary>
    private sealed unsafe class Lz4LegacyReader : PayloadReader
    {
        private const int BlockMax = 8 << 20;
        private const uint Magic = 0x184C_2102;
        // LZ4_compressBound(8 MiB): the largest block lz4 writes.
        private const int CompressedBlockMax = BlockMax + BlockMax / 255 + 16;
        private readonly Stream _input;
        private ScratchBuffer? _block, _output;
        private int _outputPos, _outputLength;
        private bool _ended, _any;

        public Lz4LegacyReader(Stream input, string name, int declared) : base(name, PayloadCompression.Lz4, declared)
        {
            _input = input;
            _input.Position = 4;
        }

        protected override int ReadCore(Span<byte> destination)
        {
            int total = 0;
            while (total < destination.Length)
            {
                if (_outputPos == _outputLength)
                {
                    // A whole block's room in the destination (the bulk of a kernel segment): decoded straight into it.
                    if (destination.Length - total >= BlockMax)
                    {
                        int direct = NextBlock(destination[total..]);
                        if (direct < 0) break;
                        total += direct;
                        continue;
                    }
                    _output ??= new ScratchBuffer(BlockMax);
                    int n = NextBlock(_output.Span[..BlockMax]);
                    if (n < 0) break;
                    (_outputPos, _outputLength) = (0, n);
                }
                int take = Math.Min(destination.Length - total, _outputLength - _outputPos);
                _output!.Span.Slice(_outputPos, take).CopyTo(destination[total..]);
                _outputPos += take;
                total += take;
            }
            return total;
        }

        /// <summary>Decodes the next block into <paramref name="target"/>; -1 at the end of the frame.</summary>
        private int NextBlock(Span<byte> target)
        {
            Span<byte> word = stackalloc byte[4];
            while (!_ended)
            {
                long at = _input.Position;
                if (_input.Length - at < 4) break;
                _input.ReadExactly(word);
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(word);
                if (size == Magic) continue;                    // concatenated frames
                // The trailing size word (the payload's last 4 bytes) ends the stream; a block that runs past the end
                // was cut short.
                long rest = _input.Length - at - 4;
                if (size == 0 || rest == 0) break;
                if (size > rest) throw new BootImageException($"{Name}: lz4 payload is truncated (block at offset {at} needs {size} bytes, {rest} remain)");
                if (size > CompressedBlockMax) throw new BootImageException($"{Name}: lz4 payload is corrupt (block at offset {at} is {size} bytes)");
                _block ??= new ScratchBuffer(CompressedBlockMax);
                _input.ReadExactly(_block.Span[..(int)size]);
                int n;
                fixed (byte* d = target) n = Compression.Lz4DecompressSafe(_block.Pointer, d, (int)size, Math.Min(BlockMax, target.Length));
                if (n < 0) throw new BootImageException($"{Name}: lz4 payload is corrupt (block at offset {at})");
                _any = true;
                return n;
            }
            _ended = true;
            if (!_any) throw new BootImageException($"{Name}: lz4 payload holds no data");
            return -1;
        }

        public override void Dispose()
        {
            _block?.Dispose();
            _output?.Dispose();
        }
    }

    /// <summary>Compressed input is read in windows of this size (xz, zstd).</summary>
    private const int InputWindow = 128 << 10;
}

/// <summary>
/// The decompressed bytes of a kernel payload, in order, each once: a loader reads the ELF headers, then each segment
/// straight into guest RAM, then what follows the image. Corrupt data is a <see cref="BootImageException"/> naming the
/// file; so is a payload that decompresses to more than <see cref="KernelPayload.MaxDecompressedSize"/>.
/// </summary>
public abstract class PayloadReader : IDisposable
{
    private protected PayloadReader(string name, PayloadCompression format, int declaredSize) => (Name, Format, DeclaredSize) = (name, format, declaredSize);

    public string Name { get; }
    public PayloadCompression Format { get; }
    /// <summary>The decompressed size the kernel build appended, or 0. A hint only: nothing written relies on it.</summary>
    public int DeclaredSize { get; }
    /// <summary>Decompressed bytes read so far.</summary>
    public long Position { get; private set; }

    /// <summary>Fills as much of <paramref name="destination"/> as the payload has left; 0 at its end.</summary>
    public int Read(Span<byte> destination)
    {
        if (destination.IsEmpty) return 0;
        int n;
        try { n = ReadCore(destination); }
        catch (Exception e) when (e is InvalidDataException or IOException or DllNotFoundException or EntryPointNotFoundException)
        {
            throw new BootImageException($"{Name}: cannot decompress the {Format} kernel payload: {e.Message}", e);
        }
        Position += n;
        if (Format != PayloadCompression.Uncompressed && Position > KernelPayload.MaxDecompressedSize)
            throw new BootImageException($"{Name}: decompressed kernel exceeds {KernelPayload.MaxDecompressedSize >> 20} MiB");
        return n;
    }

    /// <summary>Fills <paramref name="destination"/>; a payload that ends first is refused, with <paramref name="what"/>
    /// saying what it was being read for.</summary>
    public void ReadExactly(Span<byte> destination, string what)
    {
        while (!destination.IsEmpty)
        {
            int n = Read(destination);
            if (n == 0) throw new BootImageException($"{Name}: the {(Format == PayloadCompression.Uncompressed ? "file" : "decompressed payload")} ends at byte {Position}, inside {what} (truncated?)");
            destination = destination[n..];
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes through <paramref name="scratch"/>.</summary>
    public void Skip(long count, Span<byte> scratch, string what)
    {
        while (count > 0)
        {
            var chunk = scratch[..(int)Math.Min(count, scratch.Length)];
            ReadExactly(chunk, what);
            count -= chunk.Length;
        }
    }

    /// <summary>Reads into <paramref name="destination"/>: fills it unless the payload ends first.</summary>
    protected abstract int ReadCore(Span<byte> destination);

    public virtual void Dispose() { }
}
