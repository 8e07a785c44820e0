using System.Buffers;
using Xhyve.Management.Model;

using Xhyve.Vmm.Native;

namespace Xhyve.Management.Store;

/// <summary>A store operation that failed: the message names the VM or file and the problem.</summary>
public class VmStoreException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A VM of that name (in any case) is already stored.</summary>
public sealed class VmExistsException(string name, string folder)
    : VmStoreException($"a VM named '{name}' already exists ({folder})")
{
    /// <summary>The name as the existing VM spells it.</summary>
    public string Name { get; } = name;
}

/// <summary>The store itself cannot be created or used (its path is a file, is under a file, or is somewhere no folder
/// can be made, such as /proc): the message names the path and the problem.</summary>
public sealed class VmStoreUnavailableException(string path, string message, bool permissionDenied = false, Exception? inner = null)
    : VmStoreException(message, inner)
{
    /// <summary>The path that is in the way: the store's folder or the file above it.</summary>
    public string Path { get; } = path;

    /// <summary>The system refused access (EACCES, EPERM, EROFS) rather than the path being unsuitable.</summary>
    public bool PermissionDenied { get; } = permissionDenied;
}

/// <summary>
/// The VM store: one folder per VM (owner-only, since the engine's control socket lives there) holding
/// vm.json. Writes go to a new temporary file that is synced, renamed over the old one, and then the folder is
/// synced: a reader, a crash or a power cut sees the old definition or the new one, never a mix, and a change
/// that was acknowledged survives a power cut. Changes take the VM's lock file and
/// check the version they started from, so two shells editing one VM cannot lose each other's change.
/// Names are case-insensitive, as in PowerShell and Hyper-V, and keep the case they were created with: a name finds
/// its folder whatever its case (<see cref="Find"/>), and a create takes the store's lock while it checks that no
/// VM has the name in another case, since the file system would happily hold both.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]   // owner-only folders by Unix file mode
public sealed class VmStore
{
    public const string DefinitionFile = "vm.json";
    private const string LockFile = ".lock", CreateLockFile = ".create.lock";
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

    /// <summary>
    /// Checks that the store can be used: its folder is a folder (or, when it does not exist yet, can be created where
    /// it should be). With <paramref name="probeWrite"/> also when it exists, by making and removing a folder in it.
    /// Throws <see cref="VmStoreUnavailableException"/> naming the path and the problem; writes nothing that stays.
    /// </summary>
    public void CheckAvailable(bool probeWrite = false)
    {
        if (Directory.Exists(Root))
        {
            if (probeWrite) Probe(Directory.Exists(VmsFolder) ? VmsFolder : Root);
            if (Path.Exists(VmsFolder) && !Directory.Exists(VmsFolder))
                throw new VmStoreUnavailableException(VmsFolder, $"the VM store {Root} is unusable: {VmsFolder} is a file, not a folder");
            return;
        }
        if (Path.Exists(Root)) throw new VmStoreUnavailableException(Root, $"the VM store {Root} is a file, not a folder; set XHYVE_HOME to a folder");
        // Not there yet: the nearest thing that exists above it must be a folder that takes a new folder.
        string? above = Path.GetDirectoryName(Root);
        while (above != null && !Path.Exists(above)) above = Path.GetDirectoryName(above);
        if (above == null) return;
        if (!Directory.Exists(above))
            throw new VmStoreUnavailableException(above, $"the VM store {Root} cannot be created: {above} is a file, not a folder; set XHYVE_HOME to a folder");
        Probe(above);
    }

    /// <summary>Makes and removes a folder in <paramref name="folder"/>: the one sure test that folders can be made there
    /// (permissions say nothing for root, nor for /proc or a read-only mount).</summary>
    private void Probe(string folder)
    {
        string probe = Path.Combine(folder, $".xhyve-probe-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(probe);
            Directory.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Unavailable(folder, e);
        }
    }

    /// <summary>The store's folders cannot be made or read: names the store, the folder and the system's reason.</summary>
    private VmStoreUnavailableException Unavailable(string path, Exception e)
    {
        // .NET's messages name a file the user never asked for (the probe), or say "not found" for /proc's refusal.
        string reason = e switch
        {
            UnauthorizedAccessException => "permission denied",
            FileNotFoundException or DirectoryNotFoundException => "the file system there takes no new folders",
            _ => e.Message,
        };
        return new(path, $"the VM store {Root} is unusable: cannot create or use folders in {path} ({reason}); set XHYVE_HOME to a folder you can write",
            e is UnauthorizedAccessException, e);
    }

    /// <summary>The VM's folder (definition, console log, engine files): the existing folder whose name matches
    /// <paramref name="name"/> in any case, else the folder a VM of that name would get.</summary>
    public string FolderOf(string name)
    {
        if (!VirtualMachine.IsValidName(name)) throw new VmStoreException($"'{name}' is not a valid VM name");
        return Path.Combine(VmsFolder, Find(name) ?? name);
    }

    /// <summary>The stored spelling of <paramref name="name"/>: the VM folder whose name equals it ignoring case, or
    /// null when there is none. Two such folders (made by hand; the store never makes them) are an error naming both.</summary>
    public string? Find(string name)
    {
        if (!VirtualMachine.IsValidName(name)) return null;
        var matches = FolderNames(name);
        // A leftover folder without a definition (WEB/ beside web/) is no VM: only defined ones compete for the name.
        if (matches.Count > 1 && matches.Where(m => File.Exists(Path.Combine(VmsFolder, m, DefinitionFile))).ToList() is { Count: > 0 } defined) matches = defined;
        if (matches.Count > 1)
            throw new VmStoreException($"VM '{name}' is ambiguous: the folders {string.Join(" and ", matches.Select(m => Path.Combine(VmsFolder, m)))} differ only in case (VM names are case-insensitive); rename or remove all but one");
        return matches.Count == 1 ? matches[0] : null;
    }

    /// <summary>The valid VM names among the folders in vms/ (with or without a definition); with <paramref name="equalTo"/>,
    /// only those equal to it ignoring case (the name pattern is then matched only for those: a name is resolved often).</summary>
    private List<string> FolderNames(string? equalTo = null)
    {
        try
        {
            if (!Directory.Exists(VmsFolder)) return [];
            var names = new List<string>();
            foreach (var folder in Directory.EnumerateDirectories(VmsFolder))
            {
                string name = Path.GetFileName(folder);
                if ((equalTo == null || string.Equals(name, equalTo, StringComparison.OrdinalIgnoreCase)) && VirtualMachine.IsValidName(name)) names.Add(name);
            }
            return names;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw Unavailable(VmsFolder, e); }
    }

    private string DefinitionOf(string name) => Path.Combine(FolderOf(name), DefinitionFile);

    /// <summary>Whether a VM of this name, in any case, is stored.</summary>
    public bool Exists(string name) => Find(name) is { } stored && File.Exists(Path.Combine(VmsFolder, stored, DefinitionFile));

    /// <summary>The names of the stored VMs as they were created, sorted ignoring case.</summary>
    public IReadOnlyList<string> Names() =>
        FolderNames().Where(n => File.Exists(Path.Combine(VmsFolder, n, DefinitionFile)))
            .Order(StringComparer.OrdinalIgnoreCase).ThenBy(n => n, StringComparer.Ordinal).ToList();

    /// <summary>Reads a VM (its name in any case); a missing VM or a corrupt file is a <see cref="VmStoreException"/> naming it.</summary>
    public VirtualMachine Get(string name)
    {
        string stored = Find(name) ?? throw new VmStoreException($"no VM named '{name}' in {Root}");
        string file = Path.Combine(VmsFolder, stored, DefinitionFile);
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
        if (vm.Name != stored) throw new VmStoreException($"{file}: the definition names VM '{vm.Name}', but it is stored as '{stored}'");
        return vm;
    }

    /// <summary>vm.json's text, refused when it is larger than a definition may be (it is never read whole then). Read
    /// into a pooled buffer that grows from the file's size as it is read: a buffer of the cap (1 MiB) for every read
    /// went to the large object heap and cost a full garbage collection every few cmdlets.</summary>
    private static string ReadCapped(string file)
    {
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1);
        // One more than the size seen, so that a file that grew meanwhile still reads on (and is capped) below.
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(stream.Length, VmJson.MaxFileBytes) + 1);
        try
        {
            int length = 0, read;
            while ((read = stream.Read(buffer, length, buffer.Length - length)) > 0)
            {
                length += read;
                if (length > VmJson.MaxFileBytes)
                    throw new IOException($"{Math.Max(length, stream.Length)} bytes, more than a VM definition may be ({VmJson.MaxFileBytes} bytes)");
                if (length == buffer.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, VmJson.MaxFileBytes + 1));
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
            }
            return new System.Text.UTF8Encoding(false, throwOnInvalidBytes: false).GetString(buffer, 0, length).TrimStart('\uFEFF');
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    /// <summary>Stores a new VM; refuses an invalid definition or a name already taken in any case
    /// (<see cref="VmExistsException"/>), and a store that cannot be created (<see cref="VmStoreUnavailableException"/>).</summary>
    public VirtualMachine Create(VirtualMachine vm)
    {
        Check(vm);
        CheckUefiVariablesTemplate(vm);
        CheckAvailable();
        try
        {
            Directory.CreateDirectory(Root, OwnerOnly);
            Directory.CreateDirectory(VmsFolder, OwnerOnly);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw Unavailable(Path.Exists(Root) ? Root : Path.GetDirectoryName(Root) ?? Root, e); }
        string folder = Path.Combine(VmsFolder, vm.Name);
        // mkdir alone is atomic only for one spelling: "web" and "WEB" are two folders to the file system. The store's
        // create lock makes the case-insensitive check and the mkdir one step against every other create.
        using (StoreLock(CreateLockFile))
        {
            if (Find(vm.Name) is { } existing) throw new VmExistsException(existing, Path.Combine(VmsFolder, existing));
            try { Directory.CreateDirectory(folder, OwnerOnly); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw Unavailable(VmsFolder, e); }
        }
        using (Lock(vm.Name))
        {
            if (File.Exists(DefinitionOf(vm.Name))) throw new VmExistsException(vm.Name, folder);
            var stored = vm.Clone();
            stored.Version = 1;
            // The VM's own variable store first: a VM is never stored without the copy its definition names.
            try { UpdateUefiVariables(stored, folder, previousTemplate: null); }
            catch { Directory.Delete(folder, recursive: true); throw; }
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
        name = Find(name) ?? name;   // the stored spelling: the definition's name is compared with it
        using (Lock(name))
        {
            var vm = Get(name);
            string? template = vm.UefiVariablesTemplatePath;
            change(vm);
            if (vm.Name != name) throw new VmStoreException($"VM '{name}': renaming is not a change the store makes in place");
            Check(vm);
            CheckUefiVariablesTemplate(vm);
            UpdateUefiVariables(vm, FolderOf(name), template);
            vm.Version++;
            Write(vm);
            return vm;
        }
    }

    /// <summary>Deletes a VM's folder: its definition, console log and engine files (not its disk images,
    /// which live wherever their paths point).</summary>
    public void Remove(string name)
    {
        name = Find(name) ?? name;
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

    /// <summary>Where a VM's own UEFI variable store is (whether or not it has one).</summary>
    public string UefiVariablesPathOf(string name) => Path.Combine(FolderOf(name), VirtualMachine.UefiVariablesFile);

    /// <summary>Refuses a UEFI variable store template that is missing, not a regular file, or not a flash image's size
    /// (whole 4 KiB blocks, at most 16 MiB), naming the file; before anything is written.</summary>
    private static void CheckUefiVariablesTemplate(VirtualMachine vm)
    {
        if (vm.UefiVariablesTemplatePath is not { } template) return;
        string what = $"VM '{vm.Name}': UEFI variable store template {template}";
        if (Directory.Exists(template)) throw new VmStoreException($"{what}: is a folder");
        if (!File.Exists(template)) throw new VmStoreException($"{what}: the file does not exist");
        long length = new FileInfo(template).Length;
        if (length == 0 || length % Vmm.Config.BootromFirmware.VarsGranule != 0 || length > Vmm.Config.BootromFirmware.MaxVarsBytes)
            throw new VmStoreException($"{what}: {length} bytes is not a flash image (whole 4 KiB blocks, at most 16 MiB; copy OVMF_VARS_4M.fd)");
    }

    /// <summary>Makes the VM's own UEFI variable store match its definition: a copy of the template when the VM has
    /// one and the template changed (or the copy is missing), nothing when it has none. The copy is written beside the
    /// target, synced and renamed over it, owner-only, so a failed copy leaves the old store (or none).</summary>
    private static void UpdateUefiVariables(VirtualMachine vm, string folder, string? previousTemplate)
    {
        string target = Path.Combine(folder, VirtualMachine.UefiVariablesFile);
        try
        {
            if (vm.UefiVariablesTemplatePath is not { } template) { File.Delete(target); return; }
            if (template == previousTemplate && File.Exists(target)) return;   // the guest's variables stay
            string temporary = OutputFiles.TemporaryNameBeside(target);
            try
            {
                using (var source = new FileStream(template, FileMode.Open, FileAccess.Read, FileShare.Read))
                using (var copy = new FileStream(temporary, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                }))
                {
                    source.CopyTo(copy);
                    copy.Flush(flushToDisk: true);
                }
                File.Move(temporary, target, overwrite: true);
            }
            catch { File.Delete(temporary); throw; }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmStoreException($"VM '{vm.Name}': cannot copy the UEFI variable store template {vm.UefiVariablesTemplatePath} to {target}: {e.Message}", e);
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

    /// <summary>A store-wide lock file in vms/ (exclusive, waited for up to 10 s).</summary>
    private FileStream StoreLock(string file)
    {
        string path = Path.Combine(VmsFolder, file);
        try { OutputFiles.CheckReplaceable(path, "VM store lock file"); }
        catch (IOException e) { throw new VmStoreException(e.Message, e); }
        var deadline = DateTime.UtcNow + LockTimeout;
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (UnauthorizedAccessException e) { throw Unavailable(VmsFolder, e); }
            catch (IOException) when (DateTime.UtcNow < deadline) { Thread.Sleep(10); }
            catch (IOException e) { throw new VmStoreException($"the VM store is locked by another process ({path}) for more than {LockTimeout.TotalSeconds:F0} s", e); }
        }
    }

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
