using System.Text;
using Xhyve.Management.Engine;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>Console-log tails read from the log's end: Get-XhyveConsoleOutput -Tail and the dead-engine report.</summary>
public sealed class LogTailTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-tail").FullName;

    public void Dispose() => Directory.Delete(_root, true);

    /// <summary>A stream that counts the bytes read through it.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long BytesRead { get; private set; }
        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
        public override int Read(Span<byte> buffer) => Count(inner.Read(buffer));
        private int Count(int n) { BytesRead += n; return n; }
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }

    /// <summary>A 200 MB log, written in a moment: lines at its start, a sparse hole of NULs, lines at its end.</summary>
    private string BigLog(string file, string ending)
    {
        string path = Path.Combine(_root, file);
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        stream.Write(Encoding.UTF8.GetBytes("boot line 1\nboot line 2\n"));
        stream.SetLength(200L << 20);
        stream.Position = stream.Length;
        stream.Write(Encoding.UTF8.GetBytes("\nlogin: tail 1\nlogin: tail 2\nlogin: tail 3" + ending));
        return path;
    }

    private static LogTail Tail(string text, int count) => LogTail.Read(new MemoryStream(Encoding.UTF8.GetBytes(text)), count);

    private static LogTail Tail(byte[] bytes, int count) => LogTail.Read(new MemoryStream(bytes), count);

    [Fact]
    public void ThreeLinesOfA200MBLog_AreReadFromItsEnd_InOneBlock()
    {
        using var stream = new CountingStream(File.OpenRead(BigLog("console.log", "\n")));
        var tail = LogTail.Read(stream, 3);
        Assert.Equal(["login: tail 1", "login: tail 2", "login: tail 3"], tail.Lines);
        Assert.True(stream.Length > 200L << 20);
        Assert.True(stream.BytesRead <= 64 << 10, $"read {stream.BytesRead} bytes for a 3-line tail");
        Assert.Equal(stream.BytesRead, tail.BytesRead);
    }

    [Fact]
    public void ConsoleTailOfA200MBLog_AllocatesKilobytesNotTheLog()
    {
        var store = new VmStore(_root);
        store.Create(new VirtualMachine { Name = "chatty", KernelPath = "/k" });
        var host = new EngineHost(store, "/nonexistent/xhyve");
        string log = BigLog("big.log", "\r\n");
        File.Move(log, host.FileOf("chatty", EngineHost.ConsoleLogFile));
        host.ConsoleTail("chatty", 1);   // JIT and first-use allocations out of the measurement
        long before = GC.GetAllocatedBytesForCurrentThread();
        var lines = host.ConsoleTail("chatty", 3).Lines;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(["login: tail 1", "login: tail 2", "login: tail 3"], lines);
        // Reading the whole log (as it did) allocates over 400 MB for 200 MB of text.
        Assert.True(allocated < 1 << 20, $"allocated {allocated} bytes for a 3-line tail");
    }

    [Fact]
    public void ALastLineWithoutANewline_IsALine() =>
        Assert.Equal(["b", "c"], Tail("a\nb\nc", 2).Lines);

    [Fact]
    public void CrLfEndings_LoseTheirCarriageReturn() =>
        Assert.Equal(["b", "c"], Tail("a\r\nb\r\nc\r\n", 2).Lines);

    [Fact]
    public void MoreLinesThanTheLogHas_GivesTheWholeLog() =>
        Assert.Equal(["a", "", "b"], Tail("a\n\nb\n", 100).Lines);

    [Fact]
    public void AnEmptyLog_HasNoLines()
    {
        var tail = Tail("", 3);
        Assert.Empty(tail.Lines);
        Assert.Equal(0, tail.BytesRead);
    }

    [Fact]
    public void InvalidUtf8_BecomesReplacementCharacters_AndTheLinesStayApart()
    {
        byte[] log = [(byte)'a', 0xff, 0xfe, (byte)'\n', 0xe2, 0x82, (byte)'\n', (byte)'o', (byte)'k', (byte)'\n'];
        Assert.Equal(["a\uFFFD\uFFFD", "\uFFFD", "ok"], Tail(log, 3).Lines);
    }

    [Fact]
    public void ATailLongerThanABlock_IsJoinedAcrossBlocks()
    {
        string longLine = new('x', 150_000);
        Assert.Equal([longLine, "end"], Tail($"first\n{longLine}\nend\n", 2).Lines);
    }

    [Fact]
    public void ALogOfOneEndlessLine_IsReadOnlyUpToTheCap()
    {
        var stream = new CountingStream(new MemoryStream(new byte[1 << 20]));
        var tail = LogTail.Read(stream, 3, maxBytes: 200_000);
        Assert.Equal(200_000, stream.BytesRead);
        Assert.Equal(200_000, Assert.Single(tail.Lines).Length);
    }

    [Fact]
    public void FollowingTheLog_ReturnsCompleteLinesAndWhereToContinue()
    {
        var store = new VmStore(_root);
        store.Create(new VirtualMachine { Name = "follow", KernelPath = "/k" });
        var host = new EngineHost(store, "/nonexistent/xhyve");
        string log = host.FileOf("follow", EngineHost.ConsoleLogFile);
        File.WriteAllText(log, "one\r\ntwo\npart");
        var (lines, next) = host.ReadConsoleLines("follow", 0);
        Assert.Equal(["one", "two"], lines);
        Assert.Equal(9, next);
        File.AppendAllText(log, "ial\n");
        Assert.Equal(["partial"], host.ReadConsoleLines("follow", next).Lines);
    }
}
