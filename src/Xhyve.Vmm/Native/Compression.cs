using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Native;

/// <summary>The system compression libraries (Debian: liblzma5, liblz4-1, libzstd1).</summary>
internal static unsafe partial class Compression
{
    public const int LzmaOk = 0, LzmaStreamEnd = 1, LzmaBufError = 10;
    public const int LzmaRun = 0, LzmaFinish = 3;

    /// <summary>liblzma's lzma_stream (lzma/base.h); LZMA_STREAM_INIT is all zeros.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct LzmaStream
    {
        public byte* NextIn;
        public nuint AvailIn;
        public ulong TotalIn;
        public byte* NextOut;
        public nuint AvailOut;
        public ulong TotalOut;
        public nint Allocator, Internal, ReservedPtr1, ReservedPtr2, ReservedPtr3, ReservedPtr4;
        public ulong SeekPos, ReservedInt2;
        public nuint ReservedInt3, ReservedInt4;
        public int ReservedEnum1, ReservedEnum2;
    }

    [LibraryImport("liblzma.so.5", EntryPoint = "lzma_stream_decoder")]
    public static partial int LzmaStreamDecoder(LzmaStream* stream, ulong memlimit, uint flags);

    [LibraryImport("liblzma.so.5", EntryPoint = "lzma_code")]
    public static partial int LzmaCode(LzmaStream* stream, int action);

    [LibraryImport("liblzma.so.5", EntryPoint = "lzma_end")]
    public static partial void LzmaEnd(LzmaStream* stream);

    [LibraryImport("liblz4.so.1", EntryPoint = "LZ4_decompress_safe")]
    public static partial int Lz4DecompressSafe(byte* source, byte* destination, int compressedSize, int destinationCapacity);

    /// <summary>ZSTD_inBuffer and ZSTD_outBuffer: a buffer, its size and how far the decoder got.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ZstdBuffer
    {
        public byte* Data;
        public nuint Size;
        public nuint Pos;
    }

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_createDStream")]
    public static partial nint ZstdCreateDStream();

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_freeDStream")]
    public static partial nuint ZstdFreeDStream(nint stream);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_initDStream")]
    public static partial nuint ZstdInitDStream(nint stream);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_decompressStream")]
    public static partial nuint ZstdDecompressStream(nint stream, ZstdBuffer* output, ZstdBuffer* input);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_isError")]
    public static partial uint ZstdIsError(nuint code);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_getErrorName")]
    private static partial nint ZstdGetErrorNameNative(nuint code);

    public static string ZstdErrorName(nuint code) => Marshal.PtrToStringUTF8(ZstdGetErrorNameNative(code)) ?? "unknown";
}
