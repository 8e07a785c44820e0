namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>-WhatIf changes nothing in the store and says what it would have done; -Confirm asks through the host and
/// a "No" changes nothing; -Confirm:$false goes ahead without asking, even where the cmdlet's impact is High.</summary>
[Collection(HostedCollection.Name)]
public sealed class ShouldProcessTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVm(string name) => module.Run("New-XhyveVM $args[0] -MultibootPath $args[1]", name, _store.Kernel).AssertNoErrors();

    private static void AssertWhatIf(HostedResult result, string operation, string target)
    {
        result.AssertNoErrors();
        Assert.Empty(result.Output);
        Assert.Equal($"What if: Performing the operation \"{operation}\" on target \"{target}\".", Assert.Single(result.HostLines));
    }

    /// <summary>The store's files with their contents: -WhatIf must leave both as they were.</summary>
    private Dictionary<string, string> Snapshot() =>
        _store.Files().ToDictionary(f => f, f => File.Exists(Path.Combine(_store.Home, f)) ? File.ReadAllText(Path.Combine(_store.Home, f)) : "<dir>");

    [Fact]
    public void New_XhyveVM_WhatIf_writes_nothing_to_the_store()
    {
        var result = module.Run("New-XhyveVM planned -MultibootPath $args[0] -WhatIf", _store.Kernel);
        AssertWhatIf(result, "Create VM", "planned");
        Assert.Empty(_store.Files());
    }

    [Theory]
    [InlineData("Set-XhyveVM kept -ProcessorCount 8 -WhatIf", "Set VM", "kept")]
    [InlineData("Remove-XhyveVM kept -WhatIf", "Remove VM", "kept")]
    [InlineData("Add-XhyveDisk kept -Path $args[0] -WhatIf", "Add disk {0}", "kept")]
    [InlineData("Add-XhyveNetworkAdapter kept -WhatIf", "Add network adapter 'Network Adapter' (User)", "kept")]
    [InlineData("Start-XhyveVM kept -WhatIf", "Start VM", "kept")]
    public void WhatIf_on_an_existing_VM_leaves_its_folder_as_it_was(string script, string operation, string target)
    {
        NewVm("kept");
        string image = Path.Combine(_store.Work, "d.img");
        File.WriteAllBytes(image, new byte[4096]);
        var before = Snapshot();
        AssertWhatIf(module.Run(script, image), string.Format(operation, image), target);
        Assert.Equal(before, Snapshot());
    }

    [Fact]
    public void New_XhyveDiskImage_WhatIf_creates_no_image()
    {
        string image = Path.Combine(_store.Work, "planned.img");
        AssertWhatIf(module.Run("New-XhyveDiskImage $args[0] -SizeBytes 1MB -WhatIf", image), "Create disk image", image);
        Assert.False(File.Exists(image));
    }

    [Fact]
    public void ConvertFrom_XhyveCommandLine_Save_WhatIf_stores_nothing_but_still_parses()
    {
        // -Save checks the files the line names (they must exist) before asking: the kernel is a real file.
        var result = module.Run("ConvertFrom-XhyveCommandLine \"-m 1G -f multiboot,$($args[0])\" -Name fromline -Save -WhatIf", _store.Kernel);
        AssertWhatIf(result, "Create VM", "fromline");
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void WhatIfPreference_in_the_session_has_the_effect_of_WhatIf()
    {
        var result = module.Run("$WhatIfPreference = $true; try { New-XhyveVM bypref -MultibootPath $args[0] } finally { $WhatIfPreference = $false }", _store.Kernel);
        AssertWhatIf(result, "Create VM", "bypref");
        Assert.Empty(_store.Files());
    }

    [Fact]
    public void Remove_XhyveVM_asks_first_and_keeps_the_VM_when_the_answer_is_No()
    {
        NewVm("asked");
        module.Host.Answer("No");
        var result = module.Run("Remove-XhyveVM asked");
        result.AssertNoErrors();
        Assert.Contains("Performing the operation \"Remove VM\" on target \"asked\".", Assert.Single(result.Prompts), StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_store.VmsFolder, "asked", "vm.json")));
    }

    [Fact]
    public void Remove_XhyveVM_removes_the_VM_when_the_answer_is_Yes()
    {
        NewVm("agreed");
        module.Host.Answer("Yes");
        var result = module.Run("Remove-XhyveVM agreed");
        result.AssertNoErrors();
        Assert.Single(result.Prompts);
        Assert.False(Directory.Exists(Path.Combine(_store.VmsFolder, "agreed")));
    }

    [Fact]
    public void Remove_XhyveVM_Confirm_false_removes_every_match_without_asking()
    {
        NewVm("old1");
        NewVm("old2");
        NewVm("new1");
        var result = module.Run("Remove-XhyveVM 'old*' -Confirm:$false -PassThru");
        result.AssertNoErrors();
        Assert.Empty(result.Prompts);
        Assert.Equal(["old1", "old2"], result.Output.Select(o => o.P<string>("Name")));
        Assert.Equal(["new1"], Directory.EnumerateDirectories(_store.VmsFolder).Select(Path.GetFileName));
    }

    [Fact]
    public void Remove_XhyveDisk_from_the_pipeline_asks_per_disk_and_removes_only_the_confirmed_one()
    {
        NewVm("twodisks");
        string a = Path.Combine(_store.Work, "a.img"), b = Path.Combine(_store.Work, "b.img");
        File.WriteAllBytes(a, new byte[4096]);
        File.WriteAllBytes(b, new byte[4096]);
        module.Run("Add-XhyveDisk twodisks $args[0]; Add-XhyveDisk twodisks $args[1]", a, b).AssertNoErrors();
        module.Host.Answer("No");
        module.Host.Answer("Yes");
        var result = module.Run("Get-XhyveDisk twodisks | Remove-XhyveDisk");
        result.AssertNoErrors();
        Assert.Equal((2, 0), (result.Prompts.Count, result.UnusedAnswers));
        Assert.Equal([a], module.Run("(Get-XhyveDisk twodisks).Path").Output.Select(o => (string)o.BaseObject));
    }

    [Fact]
    public void Set_XhyveVM_Confirm_asks_even_at_its_Medium_impact_and_No_leaves_the_definition()
    {
        NewVm("careful");
        string before = _store.Definition("careful");
        module.Host.Answer("No");
        var result = module.Run("Set-XhyveVM careful -ProcessorCount 2 -Confirm");
        result.AssertNoErrors();
        Assert.Single(result.Prompts);
        Assert.Equal(before, _store.Definition("careful"));
    }
}
