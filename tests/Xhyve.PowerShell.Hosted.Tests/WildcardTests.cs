namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>Names with wildcards select the VMs they match, and matching nothing is not an error; a literal name that
/// matches nothing is VMNotFound (as Hyper-V's Get-VM).</summary>
[Collection(HostedCollection.Name)]
public sealed class WildcardTests(HostedModule module) : IDisposable
{
    private readonly TestStore _store = module.UseStore();

    public void Dispose() => _store.Dispose();

    private void NewVms(params string[] names)
    {
        foreach (var name in names) module.Run("New-XhyveVM $args[0] -MultibootPath $args[1]", name, _store.Kernel).AssertNoErrors();
    }

    private static string[] Names(HostedResult r) => [.. r.Output.Select(o => o.P<string>("Name"))];

    [Theory]
    [InlineData("web*", new[] { "web1", "web2" })]
    [InlineData("*1", new[] { "db1", "web1" })]
    [InlineData("web?", new[] { "web1", "web2" })]
    [InlineData("[dw]*1", new[] { "db1", "web1" })]
    [InlineData("WEB*", new[] { "web1", "web2" })]   // patterns ignore case, as PowerShell's do
    public void A_pattern_selects_the_VMs_it_matches(string pattern, string[] expected)
    {
        NewVms("web1", "web2", "db1");
        var result = module.Run("Get-XhyveVM $args[0]", pattern);
        result.AssertNoErrors();
        Assert.Equal(expected, Names(result));
    }

    [Fact]
    public void Get_XhyveVM_without_a_name_lists_every_VM_sorted()
    {
        NewVms("zeta", "alpha", "mid");
        var result = module.Run("Get-XhyveVM");
        result.AssertNoErrors();
        Assert.Equal(["alpha", "mid", "zeta"], Names(result));
    }

    [Theory]
    [InlineData("Get-XhyveVM 'nomatch*'")]
    [InlineData("Set-XhyveVM 'nomatch*' -ProcessorCount 2")]
    [InlineData("Remove-XhyveVM 'nomatch*' -Confirm:$false")]
    [InlineData("Start-XhyveVM 'nomatch*'")]
    [InlineData("Get-XhyveDisk 'nomatch*'")]
    [InlineData("Get-XhyveNetworkAdapter present -Name 'nomatch*'")]
    public void A_pattern_that_matches_nothing_is_no_error_and_changes_nothing(string script)
    {
        NewVms("present");
        var before = _store.Definition("present");
        var result = module.Run(script);
        result.AssertNoErrors();
        Assert.Empty(result.Output);
        Assert.Equal(before, _store.Definition("present"));
    }

    [Fact]
    public void A_pattern_in_an_empty_store_is_no_error()
    {
        var result = module.Run("Get-XhyveVM '*'");
        result.AssertNoErrors();
        Assert.Empty(result.Output);
    }

    [Fact]
    public void Literal_names_and_patterns_mix_only_the_literal_miss_is_an_error()
    {
        NewVms("web1", "web2", "db1");
        var result = module.Run("Get-XhyveVM db1, 'gone', 'web*', 'none*'");
        var error = result.SingleError();
        Assert.Equal("VMNotFound,Xhyve.PowerShell.Cmdlets.GetXhyveVMCommand", error.FullyQualifiedErrorId);
        Assert.Equal("gone", error.TargetObject);
        Assert.Equal(["db1", "web1", "web2"], Names(result));
    }

    [Fact]
    public void Set_XhyveVM_with_a_pattern_changes_only_the_matching_VMs()
    {
        NewVms("web1", "web2", "db1");
        module.Run("Set-XhyveVM 'web*' -ProcessorCount 2").AssertNoErrors();
        var cpus = module.Run("Get-XhyveVM | ForEach-Object { '{0}={1}' -f $_.Name, $_.ProcessorCount }").Output.Select(o => (string)o.BaseObject);
        Assert.Equal(["db1=1", "web1=2", "web2=2"], cpus);
    }

    [Fact]
    public void Get_XhyveNetworkAdapter_filters_adapters_by_a_name_pattern()
    {
        NewVms("nics");
        module.Run("Add-XhyveNetworkAdapter nics -Name wan; Add-XhyveNetworkAdapter nics -Name lan -TapName tap3; Add-XhyveNetworkAdapter nics -Name wlan -TapName tap4").AssertNoErrors();
        var result = module.Run("Get-XhyveNetworkAdapter nics -Name '*lan'");
        result.AssertNoErrors();
        Assert.Equal(["lan", "wlan"], Names(result));
    }
}
