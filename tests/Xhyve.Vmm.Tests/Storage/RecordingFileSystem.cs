using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Tests.Storage;

/// <summary>What a split/sparse image did to one of its files, in the order it did it.</summary>
internal enum FileOpKind { Create, Write, SetLength, DataSync, SyncFolder, Delete }

internal sealed record FileOp(FileOpKind Kind, string Path, long Offset = 0, byte[]? Data = null);

/// <summary>
/// In-memory files that log every write and sync (the page cache's view is what reads see), and can say what
/// a power cut at any point of that log would leave on disk: what was written before a file's last sync is
/// there; each later write, in pieces of <see cref="TearSize"/> bytes, may or may not be; a file created
/// after the folder's last sync may be gone altogether.
/// </summary>
internal sealed class RecordingFileSystem : ImageFileSystem
{
    private readonly Dictionary<string, byte[]> _initial;
    private readonly Dictionary<string, byte[]> _live = new();
    private readonly Lock _lock = new();

    public List<FileOp> Log { get; } = new();

    /// <summary>Every read of a file (scalar or vectored: one entry per call), apart from the log: reads change nothing
    /// a power cut could lose, but tests count them.</summary>
    public List<(string Path, long Offset, long Length)> Reads { get; } = new();

    /// <summary>Writes to <paramref name="path"/> in the log, in order.</summary>
    public List<FileOp> WritesTo(string path) { lock (_lock) return Log.Where(o => o.Kind == FileOpKind.Write && o.Path == path).ToList(); }

    /// <summary>Runs after each write is done (outside the recorder's lock): lets a test run another request
    /// at exactly that point, as a second thread could.</summary>
    public Action<FileOp>? AfterWrite { get; set; }

    /// <summary>The unit a disk writes atomically: a write may survive in some of these pieces and not others.</summary>
    public int TearSize { get; }

    /// <param name="initial">Files already on disk (durable) when the log starts.</param>
    public RecordingFileSystem(IReadOnlyDictionary<string, byte[]>? initial = null, int tearSize = 512)
    {
        _initial = initial?.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray()) ?? new();
        foreach (var (path, bytes) in _initial) _live[path] = bytes.ToArray();
        TearSize = tearSize;
    }

    public byte[] Contents(string path) { lock (_lock) return _live[path].ToArray(); }

    public override bool Exists(string path) { lock (_lock) return _live.ContainsKey(path); }

    public override ImageFile Open(string path, bool readOnly, bool create)
    {
        lock (_lock)
        {
            if (create)
            {
                if (_live.ContainsKey(path)) throw new StorageException($"{path}: exists");
                _live[path] = [];
                Log.Add(new FileOp(FileOpKind.Create, path));
            }
            else if (!_live.ContainsKey(path)) throw new StorageException($"{path}: not found");
        }
        return new File(this, path, readOnly);
    }

    public override void Delete(string path)
    {
        lock (_lock) { _live.Remove(path); Log.Add(new FileOp(FileOpKind.Delete, path)); }
    }

    public override void SyncFolderOf(string path)
    {
        lock (_lock) Log.Add(new FileOp(FileOpKind.SyncFolder, Path.GetDirectoryName(path) ?? ""));
    }

    /// <summary>
    /// The files a power cut after the first <paramref name="cut"/> log entries leaves, choosing with
    /// <paramref name="random"/> which unsynced writes (and unsynced new names) reached the disk.
    /// </summary>
    public Dictionary<string, byte[]> SurvivorsOfCut(int cut, Random random)
    {
        lock (_lock)
        {
            var prefix = Log.Take(cut).ToList();
            var files = _initial.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray());
            int lastFolderSync = prefix.FindLastIndex(o => o.Kind == FileOpKind.SyncFolder);
            var lastSync = new Dictionary<string, int>();
            for (int i = 0; i < prefix.Count; i++)
                if (prefix[i].Kind == FileOpKind.DataSync) lastSync[prefix[i].Path] = i;
            var lost = new HashSet<string>();
            for (int i = 0; i < prefix.Count; i++)
            {
                var op = prefix[i];
                bool synced = i < lastSync.GetValueOrDefault(op.Path, -1);
                switch (op.Kind)
                {
                    case FileOpKind.Create:
                        files[op.Path] = [];
                        // A name is durable once its folder is synced; before that it may vanish, data and all.
                        if (i > lastFolderSync && random.Next(2) == 0) lost.Add(op.Path);
                        break;
                    case FileOpKind.Delete:
                        files.Remove(op.Path);
                        break;
                    case FileOpKind.SetLength:
                        if (synced || random.Next(2) == 0) files[op.Path] = Resized(files[op.Path], op.Offset);
                        break;
                    case FileOpKind.Write:
                        for (int at = 0; at < op.Data!.Length;)
                        {
                            long pos = op.Offset + at;
                            int n = (int)Math.Min(op.Data.Length - at, TearSize - pos % TearSize);
                            if (synced || random.Next(2) == 0) files[op.Path] = Put(files[op.Path], pos, op.Data.AsSpan(at, n));
                            at += n;
                        }
                        break;
                }
            }
            foreach (var p in lost) files.Remove(p);
            return files;
        }
    }

    /// <summary>Everything written so far reaches the disk (a clean close, or kill -9 with the page cache intact).</summary>
    public Dictionary<string, byte[]> Everything() { lock (_lock) return _live.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray()); }

    private static byte[] Resized(byte[] file, long length)
    {
        Array.Resize(ref file, (int)length);   // a shrink drops the tail, a growth adds zeroes (a hole)
        return file;
    }

    private static byte[] Put(byte[] file, long offset, ReadOnlySpan<byte> data)
    {
        if (file.Length < offset + data.Length) file = Resized(file, offset + data.Length);
        data.CopyTo(file.AsSpan((int)offset));
        return file;
    }

    private sealed class File(RecordingFileSystem fs, string path, bool readOnly) : ImageFile
    {
        public override long Length { get { lock (fs._lock) return fs._live[path].Length; } }

        public override int Read(Span<byte> buffer, long offset)
        {
            lock (fs._lock)
            {
                fs.Reads.Add((path, offset, buffer.Length));
                var bytes = fs._live[path];
                if (offset >= bytes.Length) return 0;
                int n = (int)Math.Min(buffer.Length, bytes.Length - offset);
                bytes.AsSpan((int)offset, n).CopyTo(buffer);
                return n;
            }
        }

        public override void Write(ReadOnlySpan<byte> data, long offset)
        {
            if (readOnly) throw new InvalidOperationException($"{path}: opened read-only");
            lock (fs._lock)
            {
                var bytes = fs._live[path];
                if (bytes.Length < offset + data.Length) Array.Resize(ref bytes, (int)(offset + data.Length));
                data.CopyTo(bytes.AsSpan((int)offset));
                fs._live[path] = bytes;
                fs.Log.Add(new FileOp(FileOpKind.Write, path, offset, data.ToArray()));
            }
            fs.AfterWrite?.Invoke(fs.Log[^1]);
        }

        public override long ReadVectored(Span<IoBuffer> buffers, long offset)
        {
            lock (fs._lock)
            {
                long total = 0;
                foreach (var b in buffers) total += (long)b.Length;
                fs.Reads.Add((path, offset, total));
                var bytes = fs._live[path];
                long done = 0;
                foreach (var b in buffers)
                {
                    if (offset + done >= bytes.Length) break;
                    int n = (int)Math.Min((long)b.Length, bytes.Length - (offset + done));
                    bytes.AsSpan((int)(offset + done), n).CopyTo(b.AsSpan());
                    done += n;
                }
                return done;
            }
        }

        /// <summary>One log entry for the whole list, as pwritev is one system call.</summary>
        public override void WriteVectored(Span<IoBuffer> buffers, long offset)
        {
            long total = 0;
            foreach (var b in buffers) total += (long)b.Length;
            var data = new byte[total];
            int at = 0;
            foreach (var b in buffers) { b.AsSpan().CopyTo(data.AsSpan(at)); at += (int)b.Length; }
            Write(data, offset);
        }

        public override void SetLength(long length)
        {
            if (readOnly) throw new InvalidOperationException($"{path}: opened read-only");
            lock (fs._lock)
            {
                var bytes = fs._live[path];
                Array.Resize(ref bytes, (int)length);
                fs._live[path] = bytes;
                fs.Log.Add(new FileOp(FileOpKind.SetLength, path, length));
            }
        }

        public override void DataSync() { lock (fs._lock) fs.Log.Add(new FileOp(FileOpKind.DataSync, path)); }

        public override void Dispose() { }
    }
}
