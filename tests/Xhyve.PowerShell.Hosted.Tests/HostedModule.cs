using System.Collections.ObjectModel;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Text;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>One runspace, shared by the tests of the "Hosted module" collection, with the Xhyve module imported
/// from the folder this project's build laid out (bin/.../module/Xhyve: see the project file), by path, as
/// `Import-Module ./out/Xhyve/Xhyve.psd1` does. Importing once keeps the tests fast; each test gets its own store
/// (<see cref="UseStore"/>).</summary>
public sealed class HostedModule : IDisposable
{
    private readonly Runspace _runspace;
    internal RecordingHost Host { get; } = new();

    /// <summary>The module folder the tests import: built by this project's PublishXhyveModule target.</summary>
    public static string ModuleFolder { get; } = Path.Combine(AppContext.BaseDirectory, "module", "Xhyve");

    public static string ManifestPath => Path.Combine(ModuleFolder, "Xhyve.psd1");

    /// <summary>The module as Import-Module returned it.</summary>
    public PSModuleInfo Module { get; }

    public HostedModule()
    {
        if (!File.Exists(ManifestPath))
            throw new InvalidOperationException($"{ManifestPath} does not exist: build this test project (dotnet build tests/Xhyve.PowerShell.Hosted.Tests), whose PublishXhyveModule target lays out the module");
        var iss = InitialSessionState.CreateDefault2();
        _runspace = RunspaceFactory.CreateRunspace(Host, iss);
        _runspace.Open();
        var imported = Run("Import-Module $args[0] -PassThru -ErrorAction Stop", ManifestPath);
        imported.AssertNoErrors();
        Module = (PSModuleInfo)imported.Output.Single().BaseObject;
    }

    /// <summary>Runs a script (its arguments as $args) in the shared runspace; errors are collected, not thrown,
    /// as in an interactive shell with $ErrorActionPreference Continue.</summary>
    public HostedResult Run(string script, params object?[] args)
    {
        using var ps = System.Management.Automation.PowerShell.Create();
        ps.Runspace = _runspace;
        ps.AddScript(script);
        foreach (var a in args) ps.AddArgument(a);
        return Invoke(ps, script);
    }

    /// <summary>Runs one command with named parameters, as a pipeline of its own (AddCommand): a parameter binding
    /// failure comes back as the <see cref="HostedResult.Thrown"/> exception, the way a host sees it.</summary>
    public HostedResult Command(string command, IDictionary<string, object?> parameters, IEnumerable<object?>? input = null)
    {
        using var ps = System.Management.Automation.PowerShell.Create();
        ps.Runspace = _runspace;
        ps.AddCommand(command);
        foreach (var (name, value) in parameters)
        {
            if (value is SwitchParameter s) ps.AddParameter(name, s.IsPresent);
            else ps.AddParameter(name, value);
        }
        return Invoke(ps, $"{command} {string.Join(" ", parameters.Select(p => $"-{p.Key} {p.Value}"))}", input);
    }

    private HostedResult Invoke(System.Management.Automation.PowerShell ps, string what, IEnumerable<object?>? input = null)
    {
        Host.Reset();
        Collection<PSObject> output = [];
        Exception? thrown = null;
        try { output = input == null ? ps.Invoke() : ps.Invoke(input); }
        catch (RuntimeException e) { thrown = e; }
        return new HostedResult(what, output, [.. ps.Streams.Error], [.. ps.Streams.Warning.Select(w => w.Message)], [.. Host.Lines], [.. Host.Prompts], thrown)
        {
            UnusedAnswers = Host.DropUnusedAnswers(),
            Progress = [.. ps.Streams.Progress],
        };
    }

    /// <summary>Points the module at a new, empty store (XHYVE_HOME) for one test, and removes it afterwards. The
    /// variable is process-wide: the collection's tests run one at a time (<see cref="HostedCollection"/>).</summary>
    public TestStore UseStore() => new();

    public void Dispose() => _runspace.Dispose();
}

/// <summary>The tests that share the hosted runspace and set XHYVE_HOME: never in parallel with each other.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HostedCollection : ICollectionFixture<HostedModule>
{
    public const string Name = "Hosted module";
}

/// <summary>A test's own VM store: a temp folder that XHYVE_HOME names while the test runs, and a work folder beside
/// it for kernels and disk images.</summary>
public sealed class TestStore : IDisposable
{
    private readonly string? _previous = Environment.GetEnvironmentVariable("XHYVE_HOME");

    public string Root { get; } = Directory.CreateTempSubdirectory("xhyve-hosted-").FullName;
    public string Home => Path.Combine(Root, "home");
    public string Work => Path.Combine(Root, "work");
    public string VmsFolder => Path.Combine(Home, "vms");

    /// <summary>A file that serves as a kernel: New-XhyveVM checks that it exists; nothing here boots it.</summary>
    public string Kernel { get; }

    public TestStore()
    {
        Directory.CreateDirectory(Work);
        Kernel = Path.Combine(Work, "kernel.elf");
        File.WriteAllBytes(Kernel, [0x7f, (byte)'E', (byte)'L', (byte)'F']);
        Environment.SetEnvironmentVariable("XHYVE_HOME", Home);
    }

    /// <summary>Every file under the store, relative to it: what "nothing was written" is checked against.</summary>
    public IReadOnlyList<string> Files() => Directory.Exists(Home)
        ? Directory.EnumerateFileSystemEntries(Home, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Home, f)).Order(StringComparer.Ordinal).ToList()
        : [];

    public string Definition(string vm) => File.ReadAllText(Path.Combine(VmsFolder, vm, "vm.json"));

    /// <summary>A 4 KiB raw disk image in the working folder.</summary>
    public string Image(string name = "d.img")
    {
        string path = Path.Combine(Work, name);
        File.WriteAllBytes(path, new byte[4096]);
        return path;
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("XHYVE_HOME", _previous);
        Directory.Delete(Root, recursive: true);
    }
}

internal static class PSObjectProperties
{
    /// <summary>A property's value, as $object.Name reads it.</summary>
    public static T P<T>(this PSObject o, string name)
    {
        var property = o.Properties[name] ?? throw new InvalidOperationException($"{o.TypeNames[0]} has no property {name}");
        return (T)property.Value;
    }
}

/// <summary>What one invocation produced. Its assertion helpers print every ErrorRecord in full when they fail.</summary>
public sealed record HostedResult(string Script, Collection<PSObject> Output, IReadOnlyList<ErrorRecord> Errors, IReadOnlyList<string> Warnings,
    IReadOnlyList<string> HostLines, IReadOnlyList<string> Prompts, Exception? Thrown)
{
    /// <summary>Answers the test queued (<see cref="RecordingHost.Answer"/>) that no prompt took.</summary>
    public int UnusedAnswers { get; init; }

    /// <summary>The progress records written, in order.</summary>
    public IReadOnlyList<ProgressRecord> Progress { get; init; } = [];

    public void AssertNoErrors()
    {
        if (Errors.Count > 0 || Thrown != null) Assert.Fail($"expected no errors from: {Script}\n{Describe()}");
    }

    /// <summary>The single error the invocation wrote, after checking that there is exactly one and nothing was thrown.</summary>
    public ErrorRecord SingleError()
    {
        if (Errors.Count != 1 || Thrown != null) Assert.Fail($"expected exactly one error from: {Script}\n{Describe()}");
        return Errors[0];
    }

    /// <summary>The ErrorRecord of the exception the invocation threw (a terminating error, a binding failure).</summary>
    public ErrorRecord ThrownRecord()
    {
        if (Thrown is not IContainsErrorRecord record) { Assert.Fail($"expected a terminating error from: {Script}\n{Describe()}"); throw null!; }
        return record.ErrorRecord;
    }

    /// <summary>The single object written, after checking there were no errors and that it is of the module's type
    /// <paramref name="type"/> (XhyveVM, XhyveDisk, ...). The test sees it as a script does, through its properties:
    /// the module's types are not referenced here.</summary>
    public PSObject Single(string type)
    {
        AssertNoErrors();
        if (Output.Count != 1) Assert.Fail($"expected one object from: {Script}\n{Describe()}");
        Assert.Equal("Xhyve.PowerShell." + type, Output[0].TypeNames[0]);
        return Output[0];
    }

    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine($"output: {Output.Count} object(s): {string.Join(", ", Output.Select(o => o?.ToString()))}");
        if (Thrown != null) text.AppendLine($"threw {Thrown.GetType().Name}: {Thrown.Message}" + (Thrown is IContainsErrorRecord r ? $" [{Format(r.ErrorRecord)}]" : ""));
        foreach (var e in Errors) text.AppendLine($"error: {Format(e)}");
        foreach (var w in Warnings) text.AppendLine($"warning: {w}");
        foreach (var l in HostLines) text.AppendLine($"host: {l}");
        foreach (var p in Prompts) text.AppendLine($"prompt: {p}");
        if (UnusedAnswers > 0) text.AppendLine($"{UnusedAnswers} queued answer(s) not taken by a prompt");
        return text.ToString();
    }

    public static string Format(ErrorRecord e) =>
        $"{e.FullyQualifiedErrorId} | {e.CategoryInfo.Category} | target: {e.TargetObject ?? "(null)"} | {e.Exception.GetType().Name}: {e.Exception.Message}";
}

/// <summary>What the error tests check of an ErrorRecord: its id with the cmdlet's class, its category and its target.</summary>
public static class ErrorAssert
{
    public static void AssertError(ErrorRecord error, string id, string cmdletClass, ErrorCategory category, object? target)
    {
        Assert.Equal($"{id},Xhyve.PowerShell.Cmdlets.{cmdletClass}", error.FullyQualifiedErrorId);
        Assert.Equal(category, error.CategoryInfo.Category);
        Assert.Equal(target, error.TargetObject);
    }
}
