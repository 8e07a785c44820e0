using System.Text;

namespace Xhyve.Management.Engine;

/// <summary>The last lines of a log, and how many bytes it took to find them.</summary>
/// <param name="Lines">Oldest first; a final line without a newline counts; "\r\n" endings lose their '\r'.</param>
/// <param name="BytesRead">Bytes read from the log (a few blocks, however long the log is).</param>
/// <param name="End">The log's length when it was read: where following it continues.</param>
public sealed record LogTail(IReadOnlyList<string> Lines, long BytesRead, long End)
{
    /// <summary>Bytes read back from the end at most; a tail that needs more (lines megabytes long) starts
    /// with the part of its oldest line that fits, so a log of one endless line cannot exhaust memory.</summary>
    public const int MaxBytes = 4 << 20;
    private const int BlockSize = 64 << 10;

    /// <summary>The last <paramref name="count"/> lines of <paramref name="stream"/>, read backwards from its end in
    /// blocks until they are found. Bytes that are not UTF-8 become U+FFFD.</summary>
    public static LogTail Read(Stream stream, int count, int maxBytes = MaxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        long end = stream.Length;
        if (count == 0 || end == 0) return new([], 0, end);
        // Scan backwards for newlines. A newline as the very last byte ends the last line rather than starting
        // an empty one, so the tail begins after the (count+1)-th newline from the end, not counting that one.
        // '\n' never occurs inside a multi-byte UTF-8 sequence, so scanning bytes is safe.
        var chunks = new List<byte[]>();
        long start = end, read = 0;
        int newlines = 0;
        bool found = false;
        int startInChunk = 0;
        while (start > 0 && read < maxBytes && !found)
        {
            int size = (int)Math.Min(Math.Min(BlockSize, start), maxBytes - read);
            start -= size;
            var block = new byte[size];
            stream.Position = start;
            stream.ReadExactly(block);
            read += size;
            chunks.Add(block);
            for (int i = size - 1; i >= 0; i--)
            {
                if (block[i] != (byte)'\n' || start + i == end - 1) continue;
                if (++newlines == count) { found = true; startInChunk = i + 1; break; }
            }
        }
        // Join the blocks (read last-first) from the tail's first byte on.
        chunks.Reverse();
        var bytes = new byte[read - startInChunk];
        int at = 0;
        for (int c = 0; c < chunks.Count; c++)
        {
            int from = c == 0 ? startInChunk : 0;
            chunks[c].AsSpan(from).CopyTo(bytes.AsSpan(at));
            at += chunks[c].Length - from;
        }
        string text = new UTF8Encoding(false, throwOnInvalidBytes: false).GetString(bytes);
        var lines = text.Split('\n');
        if (lines[^1].Length == 0) lines = lines[..^1];
        for (int i = 0; i < lines.Length; i++) if (lines[i].EndsWith('\r')) lines[i] = lines[i][..^1];
        return new(lines.Length <= count ? lines : lines[^count..], read, end);
    }

    /// <summary>The last <paramref name="count"/> lines of the file at <paramref name="path"/>; none when it does not exist.</summary>
    public static LogTail Read(string path, int count)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
            return Read(stream, count);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return new([], 0, 0); }
    }
}
