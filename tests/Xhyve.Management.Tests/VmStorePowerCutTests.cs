using System.Text;
using Xhyve.Management.Model;
using Xhyve.Management.Store;

namespace Xhyve.Management.Tests;

/// <summary>
/// Issue 11 item 12, the VM store's part: what a power cut at any point of a save leaves of vm.json. kill -9 keeps
/// the page cache, so it cannot tell a missing fsync; here the store's file operations are recorded and replayed
/// keeping only what was synced (plus any in-order part of what was not), at every cut point.
/// </summary>
public sealed class VmStorePowerCutTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-powercut").FullName;

    public void Dispose() => Directory.Delete(_root, true);

    private abstract record Op;
    private sealed record Create(string Path, int File) : Op;
    private sealed record Write(int File, byte[] Bytes) : Op;
    private sealed record Sync(int File) : Op;
    private sealed record Rename(string From, string To) : Op;
    private sealed record SyncFolder(string Path) : Op;
    private sealed record Delete(string Path) : Op;

    /// <summary>The real file operations, each also written to <see cref="Log"/> while recording.</summary>
    private sealed class RecordingFiles : IStoreFiles
    {
        public readonly List<Op> Log = [];
        public bool Recording;
        private int _files;

        private void Add(Op op) { if (Recording) Log.Add(op); }

        public IStoreFile CreateNew(string path)
        {
            var file = NativeStoreFiles.Instance.CreateNew(path);
            int id = ++_files;
            Add(new Create(path, id));
            return new Recorded(this, file, id);
        }

        public void Rename(string from, string to) { NativeStoreFiles.Instance.Rename(from, to); Add(new Rename(from, to)); }
        public void SyncFolder(string path) { NativeStoreFiles.Instance.SyncFolder(path); Add(new SyncFolder(path)); }
        public void Delete(string path) { NativeStoreFiles.Instance.Delete(path); Add(new Delete(path)); }

        private sealed class Recorded(RecordingFiles owner, IStoreFile file, int id) : IStoreFile
        {
            public void Write(ReadOnlySpan<byte> bytes) { file.Write(bytes); owner.Add(new Write(id, bytes.ToArray())); }
            public void Sync() { file.Sync(); owner.Add(new Sync(id)); }
            public void Dispose() => file.Dispose();
        }
    }

    /// <summary>
    /// A disk as a power cut leaves it. Folder entries and file contents change in memory first; a file's fsync makes
    /// its content durable, the folder's fsync makes every entry change before it durable (but not the content of
    /// the files they name: an entry may survive whose data did not). Until then, any in-order part of the pending
    /// changes may have reached the disk anyway (writeback, the journal), including half of a write.
    /// </summary>
    private sealed class PowerCutModel
    {
        private readonly Dictionary<string, int> _durableNames = [];
        private readonly List<(string Kind, string Path, string? To, int File)> _pendingEntries = [];
        private readonly Dictionary<int, byte[]> _durableData = [], _data = [];
        private readonly Dictionary<int, List<byte[]>> _pendingData = [];

        public PowerCutModel(string path, byte[] content)
        {
            _durableNames[path] = 0;
            _durableData[0] = _data[0] = content;
            _pendingData[0] = [];
        }

        public void Apply(Op op)
        {
            switch (op)
            {
                case Create c:
                    _pendingEntries.Add(("link", c.Path, null, c.File));
                    _durableData[c.File] = _data[c.File] = [];
                    _pendingData[c.File] = [];
                    break;
                case Write w:
                    _data[w.File] = [.. _data[w.File], .. w.Bytes];
                    _pendingData[w.File].Add(_data[w.File]);
                    break;
                case Sync s:
                    _durableData[s.File] = _data[s.File];
                    _pendingData[s.File].Clear();
                    break;
                case Rename r: _pendingEntries.Add(("rename", r.From, r.To, 0)); break;
                case Delete d: _pendingEntries.Add(("unlink", d.Path, null, 0)); break;
                case SyncFolder:
                    foreach (var entry in _pendingEntries) ApplyEntry(_durableNames, entry);
                    _pendingEntries.Clear();
                    break;
            }
        }

        private static void ApplyEntry(Dictionary<string, int> names, (string Kind, string Path, string? To, int File) entry)
        {
            switch (entry.Kind)
            {
                case "link": names[entry.Path] = entry.File; break;
                case "rename" when names.Remove(entry.Path, out int file): names[entry.To!] = file; break;
                case "unlink": names.Remove(entry.Path); break;
            }
        }

        /// <summary>Every content <paramref name="path"/> may have after a power cut now (null: the file is gone).</summary>
        public IEnumerable<byte[]?> PossibleContents(string path)
        {
            for (int persisted = 0; persisted <= _pendingEntries.Count; persisted++)
            {
                var names = new Dictionary<string, int>(_durableNames);
                foreach (var entry in _pendingEntries.Take(persisted)) ApplyEntry(names, entry);
                if (!names.TryGetValue(path, out int file)) { yield return null; continue; }
                yield return _durableData[file];
                foreach (var version in _pendingData[file])
                {
                    yield return version[..(version.Length / 2)];
                    yield return version;
                }
            }
        }
    }

    [Fact]
    public void APowerCutAtAnyPointOfASave_LeavesTheOldOrTheNewDefinition_AndTheNewOneOnceSaveReturned()
    {
        var files = new RecordingFiles();
        var store = new VmStore(_root, files);
        store.Create(new VirtualMachine { Name = "web", KernelPath = "/vm/vmlinuz" });
        string path = Path.Combine(store.FolderOf("web"), VmStore.DefinitionFile);
        byte[] before = File.ReadAllBytes(path);

        files.Recording = true;
        store.Update("web", vm => vm.ProcessorCount = 4);
        byte[] after = File.ReadAllBytes(path);
        Assert.NotEqual(before, after);
        Assert.NotEmpty(files.Log);

        var model = new PowerCutModel(path, before);
        for (int cut = 0; cut <= files.Log.Count; cut++)
        {
            if (cut > 0) model.Apply(files.Log[cut - 1]);
            string at = cut == 0 ? "before the first operation" : $"after {files.Log[cut - 1]}";
            foreach (var content in model.PossibleContents(path))
            {
                Assert.True(content != null, $"a power cut {at} leaves no vm.json");
                string text = Encoding.UTF8.GetString(content);
                Assert.True(content.AsSpan().SequenceEqual(before) || content.AsSpan().SequenceEqual(after),
                    $"a power cut {at} leaves a vm.json that is neither definition ({content.Length} bytes): {text[..Math.Min(80, text.Length)]}");
                if (cut == files.Log.Count)
                    Assert.True(content.AsSpan().SequenceEqual(after), $"a power cut after the save returned brings back the old definition");
            }
        }
    }

    [Fact]
    public void ACreate_WritesThroughTheSeam_SyncsTheNewFolderIntoVms_AndLeavesNoFileBehind()
    {
        var files = new RecordingFiles { Recording = true };
        var store = new VmStore(_root, files);
        store.Create(new VirtualMachine { Name = "web", KernelPath = "/vm/vmlinuz" });
        // Create, write, sync, rename, sync the folder: the seam sees every step of the real write. A new VM's
        // folder is then synced into vms/ as well (SyncFolder syncs the folder holding the path it is given).
        string folder = store.FolderOf("web");
        Assert.Equal(["Create", "Write", "Sync", "Rename", "SyncFolder", "SyncFolder"], files.Log.Select(op => op.GetType().Name));
        Assert.Equal([Path.Combine(folder, VmStore.DefinitionFile), folder], files.Log.OfType<SyncFolder>().Select(op => op.Path));
        Assert.Equal([".lock", VmStore.DefinitionFile], Directory.GetFiles(store.FolderOf("web")).Select(Path.GetFileName).Order());
    }
}
