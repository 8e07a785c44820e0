using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Native;

/// <summary>The system compression libraries (Debian: liblzma5, liblz4-1, libzstd1).</summary>
internal static unsafe partial class Compression
{
    [LibraryImport("liblzma.so.5", EntryPoint = "lzma_stream_buffer_decode")]
    public static partial int LzmaStreamBufferDecode(ulong* memlimit, uint flags, nint allocator,
        byte* input, nuint* inPos, nuint inSize, byte* output, nuint* outPos, nuint outSize);

    public const int LzmaOk = 0, LzmaStreamEnd = 1, LzmaBufError = 10;

    [LibraryImport("liblz4.so.1", EntryPoint = "LZ4_decompress_safe")]
    public static partial int Lz4DecompressSafe(byte* source, byte* destination, int compressedSize, int destinationCapacity);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_decompress")]
    public static partial nuint ZstdDecompress(byte* destination, nuint destinationCapacity, byte* source, nuint sourceSize);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_findFrameCompressedSize")]
    public static partial nuint ZstdFindFrameCompressedSize(byte* source, nuint sourceSize);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_isError")]
    public static partial uint ZstdIsError(nuint code);

    [LibraryImport("libzstd.so.1", EntryPoint = "ZSTD_getErrorName")]
    private static partial nint ZstdGetErrorNameNative(nuint code);

    public static string ZstdErrorName(nuint code) => Marshal.PtrToStringUTF8(ZstdGetErrorNameNative(code)) ?? "unknown";
}
