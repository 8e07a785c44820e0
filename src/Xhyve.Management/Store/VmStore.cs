using Xhyve.Management.Model;

using Xhyve.Vmm.Native;

namespace Xhyve.Management.Store;

/// <summary>A store operation that failed: the message names the VM or file and the problem.</summary>
public sealed class VmStoreException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The VM store: one folder per VM (owner-only, since the engine's control socket lives there) holding
/// vm.json. Writes go to a new temporary file that is synced, renamed over the old one, and then the folder is
/// synced: a reader, a crash or a power cut sees the old definition or the new one, never a mix, and a change
/// that was acknowledged survives a power cut. Changes take the VM's lock file and
/// check the version they started from, so two shells editing one VM cannot lose each other's change.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]   // owner-only folders by Unix file mode
public sealed class VmStore
{
    public const string DefinitionFile = "vm.json";
    private const string LockFile = ".lock";
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(10);

    public string Root { get; }
    private readonly IStoreFiles _files;

    public VmStore(string root) : this(root, NativeStoreFiles.Instance) { }

    internal VmStore(string root, IStoreFiles files) => (Root, _files) = (Path.GetFullPath(root), files);

    /// <summary>$XHYVE_HOME, else $XDG_DATA_HOME/xhyve, else ~/.local/share/xhyve.</summary>
    public static string DefaultRoot()
    {
        string? home = Environment.GetEnvironmentVariable("XHYVE_HOME");
        if (!string.IsNullOrEmpty(home)) return home;
        string? data = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
        if (string.IsNullOrEmpty(data)) data = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "share");
        return Path.Combine(data, "xhyve");
    }

    public static VmStore OpenDefault() => new(DefaultRoot());

    private string VmsFolder => Path.Combine(Root, "vms");

    /// <summary>The VM's folder (definition, console log, engine files).</summary>
    public string FolderOf(string name)
    {
        if (!VirtualMachine.IsValidName(name)) throw new VmStoreException($"'{name}' is not a valid VM name");
        return Path.Combine(VmsFolder, name);
    }

    private string DefinitionOf(string name) => Path.Combine(FolderOf(name), DefinitionFile);

    public bool Exists(string name) => VirtualMachine.IsValidName(name) && File.Exists(DefinitionOf(name));

    /// <summary>The names of the stored VMs, sorted.</summary>
    public IReadOnlyList<string> Names()
    {
        if (!Directory.Exists(VmsFolder)) return [];
        return Directory.EnumerateDirectories(VmsFolder).Select(Path.GetFileName).OfType<string>()
            .Where(n => VirtualMachine.IsValidName(n) && File.Exists(Path.Combine(VmsFolder, n, DefinitionFile)))
            .Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Reads a VM; a missing VM or a corrupt file is a <see cref="VmStoreException"/> naming it.</summary>
    public VirtualMachine Get(string name)
    {
        string file = DefinitionOf(name);
        string json;
        try { json = ReadCapped(file); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new VmStoreException($"no VM named '{name}' in {Root}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmStoreException($"{file}: {e.Message}", e);
        }
        VirtualMachine vm;
        try { vm = VmJson.Deserialize(json, file); }
        catch (VmDefinitionException e) { throw new VmStoreException(e.Message, e); }
        if (vm.Name != name) throw new VmStoreException($"{file}: the definition names VM '{vm.Name}', but it is stored as '{name}'");
        return vm;
    }

    /// <summary>vm.json's text, refused when it is larger than a definition may be (it is never read whole then).</summary>
    private static string ReadCapped(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1);
        var buffer = new byte[VmJson.MaxFileBytes + 1];
        int length = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        if (length > VmJson.MaxFileBytes)
            throw new IOException($"{Math.Max(length, stream.Length)} bytes, more than a VM definition may be ({VmJson.MaxFileBytes} bytes)");
        return new System.Text.UTF8Encoding(false, throwOnInvalidBytes: false).GetString(buffer, 0, length).TrimStart('\uFEFF');
    }

    /// <summary>Stores a new VM; refuses an invalid definition or a name already taken.</summary>
    public VirtualMachine Create(VirtualMachine vm)
    {
        Check(vm);
        Directory.CreateDirectory(Root, OwnerOnly);
        Directory.CreateDirectory(VmsFolder, OwnerOnly);
        string folder = FolderOf(vm.Name);
        try
        {
            // mkdir is the atomic test: two shells creating the same name cannot both succeed.
            var info = new DirectoryInfo(folder);
            if (info.Exists) throw new VmStoreException($"a VM named '{vm.Name}' already exists ({folder})");
            Directory.CreateDirectory(folder, OwnerOnly);
        }
        catch (IOException e) { throw new VmStoreException($"{folder}: {e.Message}", e); }
        using (Lock(vm.Name))
        {
            if (File.Exists(DefinitionOf(vm.Name))) throw new VmStoreException($"a VM named '{vm.Name}' already exists ({folder})");
            var stored = vm.Clone();
            stored.Version = 1;
            Write(stored);
            // The VM's folder is a new entry in vms/: synced too, or a power cut could take back a created VM.
            try { _files.SyncFolder(folder); }
            catch (IOException e) { throw new VmStoreException($"cannot sync {VmsFolder}: {e.Message}", e); }
            return stored;
        }
    }

    /// <summary>Saves changes made to a copy read at version <see cref="VirtualMachine.Version"/>; refuses when
    /// someone else saved in between (get the VM again and repeat the change).</summary>
    public VirtualMachine Save(VirtualMachine vm)
    {
        Check(vm);
        using (Lock(vm.Name))
        {
            var current = Get(vm.Name);
            if (current.Version != vm.Version)
                throw new VmStoreException($"VM '{vm.Name}' was changed elsewhere since it was read (version {vm.Version}, now {current.Version}); get it again and repeat the change");
            var stored = vm.Clone();
            stored.Version = current.Version + 1;
            Write(stored);
            return stored;
        }
    }

    /// <summary>Reads, changes and saves a VM under its lock, so concurrent updates apply one after the other.</summary>
    public VirtualMachine Update(string name, Action<VirtualMachine> change)
    {
        using (Lock(name))
        {
            var vm = Get(name);
            change(vm);
            if (vm.Name != name) throw new VmStoreException($"VM '{name}': renaming is not a change the store makes in place");
            Check(vm);
            vm.Version++;
            Write(vm);
            return vm;
        }
    }

    /// <summary>Deletes a VM's folder: its definition, console log and engine files (not its disk images,
    /// which live wherever their paths point).</summary>
    public void Remove(string name)
    {
        string folder = FolderOf(name);
        if (!File.Exists(DefinitionOf(name))) throw new VmStoreException($"no VM named '{name}' in {Root}");
        using (Lock(name))
        {
            // Move aside first so no reader sees a half-deleted folder as a VM.
            string doomed = Path.Combine(VmsFolder, $".removing-{name}-{Guid.NewGuid():N}");
            Directory.Move(folder, doomed);
            Directory.Delete(doomed, recursive: true);
        }
    }

    private static void Check(VirtualMachine vm)
    {
        var problems = vm.Validate();
        if (problems.Count > 0) throw new VmStoreException($"VM '{vm.Name}': {string.Join("; ", problems)}");
    }

    /// <summary>Replaces vm.json whole: a new temporary file in the folder (O_EXCL), synced, renamed over vm.json, then the
    /// folder synced. In this order, because a power cut keeps only what was synced: a rename that reaches the disk
    /// before the data would leave an empty vm.json, and until the folder is synced the rename itself may be lost.
    /// A vm.json that is a symlink or anything but this user's regular file is refused rather than replaced.</summary>
    private void Write(VirtualMachine vm)
    {
        string file = DefinitionOf(vm.Name);
        string temporary = OutputFiles.TemporaryNameBeside(file);
        byte[] content = System.Text.Encoding.UTF8.GetBytes(VmJson.Serialize(vm));
        try
        {
            using (var created = _files.CreateNew(temporary))
            {
                created.Write(content);
                created.Sync();
            }
            _files.Rename(temporary, file);
            _files.SyncFolder(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { _files.Delete(temporary); } catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
            throw new VmStoreException($"cannot write the VM definition: {e.Message}", e);
        }
    }

    /// <summary>The VM's lock: an exclusive open of its lock file (flock on Unix), waited for up to 10 s.</summary>
    private IDisposable Lock(string name) =>
        Lock(name, LockTimeout, path => $"VM '{name}' is locked by another process ({path}) for more than {LockTimeout.TotalSeconds:F0} s");

    /// <summary>
    /// Holds the VM's lock while its engine starts, so that of two starts at once (threads or processes) one
    /// launches the engine and the other is refused rather than launching a second one. Waits up to
    /// <paramref name="wait"/>, long enough for a change to vm.json (milliseconds), not for another start (seconds).
    /// </summary>
    public IDisposable LockForStart(string name, TimeSpan wait) =>
        Lock(name, wait, path => $"VM '{name}' is already starting (another start holds its lock file {path}); see Get-XhyveVM for its state");

    private IDisposable Lock(string name, TimeSpan timeout, Func<string, string> timedOut)
    {
        string path = Path.Combine(FolderOf(name), LockFile);
        // OpenOrCreate follows a symlink: a link planted as the lock file would create or hold a file elsewhere.
        try { OutputFiles.CheckReplaceable(path, "VM lock file"); }
        catch (IOException e) when (Directory.Exists(FolderOf(name))) { throw new VmStoreException(e.Message, e); }
        catch (IOException e) { throw new VmStoreException($"no VM named '{name}' in {Root}", e); }
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (DirectoryNotFoundException e) { throw new VmStoreException($"no VM named '{name}' in {Root}", e); }
            catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(10); }
            catch (IOException e) { throw new VmStoreException(timedOut(path), e); }
        }
    }
}
