using Xhyve.Vmm.Native;

namespace Xhyve.Management.Store;

/// <summary>A new file the store is writing.</summary>
internal interface IStoreFile : IDisposable
{
    void Write(ReadOnlySpan<byte> bytes);

    /// <summary>Makes what was written durable (fsync): until then a power cut may lose any of it.</summary>
    void Sync();
}

/// <summary>
/// The few file operations the store makes to replace vm.json, as a seam: tests record them and replay only what was
/// synced, to see what a power cut at any point would leave. <see cref="NativeStoreFiles"/> is the real one.
/// </summary>
internal interface IStoreFiles
{
    /// <summary>Creates <paramref name="path"/> as a new file; never opens one that exists.</summary>
    IStoreFile CreateNew(string path);

    /// <summary>Renames <paramref name="from"/> over <paramref name="to"/> in one step (rename(2)).</summary>
    void Rename(string from, string to);

    /// <summary>Makes the folder holding <paramref name="path"/> durable (fsync of the folder): names created or renamed
    /// in it survive a power cut only after this.</summary>
    void SyncFolder(string path);

    /// <summary>Removes <paramref name="path"/> if it is there.</summary>
    void Delete(string path);
}

/// <summary>The store's file operations on the real file system.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class NativeStoreFiles : IStoreFiles
{
    public static readonly NativeStoreFiles Instance = new();
    private const string What = "VM definition";

    public IStoreFile CreateNew(string path) => new File(new FileStream(path, new FileStreamOptions
    {
        // CreateNew is O_CREAT|O_EXCL: it opens nothing that is already there, a planted symlink included.
        Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None,
        UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
    }));

    public void Rename(string from, string to)
    {
        // Only this user's regular file (or nothing) is replaced; checked just before, as the target may have changed.
        OutputFiles.CheckReplaceable(to, What);
        System.IO.File.Move(from, to, overwrite: true);
    }

    public void SyncFolder(string path) => OutputFiles.SyncFolder(path, What);

    public void Delete(string path) => System.IO.File.Delete(path);

    private sealed class File(FileStream stream) : IStoreFile
    {
        public void Write(ReadOnlySpan<byte> bytes) => stream.Write(bytes);
        public void Sync() => stream.Flush(flushToDisk: true);
        public void Dispose() => stream.Dispose();
    }
}
