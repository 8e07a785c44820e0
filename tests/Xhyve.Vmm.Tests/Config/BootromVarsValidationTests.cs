using Xhyve.Vmm.Config;

namespace Xhyve.Vmm.Tests.Config;

/// <summary>The UEFI variable store of -l bootrom,CODE,VARS is checked before anything runs, each problem naming the file.</summary>
public sealed class BootromVarsValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("bootromvars").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private string File(string name, long length)
    {
        string path = Path.Combine(_dir, name);
        using (var f = System.IO.File.Create(path)) f.SetLength(length);
        return path;
    }

    [Theory]
    [InlineData(128 * 1024)]
    [InlineData(528 * 1024)]   // Debian's 4M image keeps 528 KiB of variables
    [InlineData(16 << 20)]
    public void AStoreOfWholeFlashBlocks_HasNoProblems(long length)
    {
        var rom = File("code.fd", 2 << 20);
        Assert.Empty(new BootromFirmware(rom, File("vars.fd", length)).VarsProblems());
    }

    [Fact]
    public void NoStore_HasNoProblems() => Assert.Empty(new BootromFirmware(File("bios.bin", 256 * 1024)).VarsProblems());

    [Theory]
    [InlineData(0, "0 bytes is not a whole number of 4 KiB flash blocks")]
    [InlineData(4097, "4097 bytes is not a whole number of 4 KiB flash blocks")]
    [InlineData((16 << 20) + 4096, "is more than the 16 MiB a flash store may have")]
    public void AStoreOfTheWrongSize_IsAProblemNamingIt(long length, string problem)
    {
        string vars = File("vars.fd", length);
        var problems = new BootromFirmware(File("code.fd", 4096), vars).VarsProblems();
        Assert.StartsWith($"-l bootrom: variable store {vars}: ", Assert.Single(problems));
        Assert.Contains(problem, problems[0]);
    }

    [Fact]
    public void AMissingStore_IsAProblemNamingIt()
    {
        string vars = Path.Combine(_dir, "absent.fd");
        Assert.Equal([$"-l bootrom: variable store {vars}: file not found"], new BootromFirmware("code.fd", vars).VarsProblems());
    }

    [Fact]
    public void AFolderAsStore_IsAProblem()
    {
        Assert.Equal([$"-l bootrom: variable store {_dir}: is a directory"], new BootromFirmware("code.fd", _dir).VarsProblems());
    }

    [Fact]
    public void TheRomAsItsOwnStore_IsAProblem_EvenThroughALink()
    {
        string rom = File("code.fd", 4096);
        string link = Path.Combine(_dir, "link.fd");
        System.IO.File.CreateSymbolicLink(link, rom);
        Assert.Contains(new BootromFirmware(rom, rom).VarsProblems(), p => p.Contains("is the ROM") && p.Contains(rom));
        Assert.Contains(new BootromFirmware(rom, link).VarsProblems(), p => p.Contains("is the ROM"));
    }

    [Fact, System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void AReadOnlyStore_IsAProblem_UnlessRunAsRoot()
    {
        string vars = File("vars.fd", 4096);
        System.IO.File.SetUnixFileMode(vars, UnixFileMode.UserRead);
        var problems = new BootromFirmware(File("code.fd", 4096), vars).VarsProblems();
        // root opens any file for writing: the check then rightly finds nothing (the CI runs as root).
        if (Environment.IsPrivilegedProcess) Assert.Empty(problems);
        else Assert.Contains(problems, p => p.Contains("cannot be opened for reading and writing"));
    }
}
