using Xhyve.Vmm.Config;

namespace Xhyve.Vmm.Tests.Config;

/// <summary>Problems that need the whole command line (and the file system) to see.</summary>
public sealed class VmSpecificationValidationTests
{
    private static readonly string Kernel = typeof(VmSpecificationValidationTests).Assembly.Location; // any existing file

    private static IReadOnlyList<string> Problems(params string[] args) => CommandLineParser.Parse(args).Spec.Validate(hostMaxVcpus: 8);

    [Theory]
    [InlineData("2G", 1UL << 30, "-m: 2 GiB is more than this host's memory (1 GiB)")]
    [InlineData("16T", 24UL << 30, "-m: 16 TiB is more than this host's memory (24 GiB)")]
    public void MemoryAboveTheHosts_IsAProblem(string memory, ulong host, string problem)
    {
        var spec = CommandLineParser.Parse(["-m", memory, "-f", $"kexec,{Kernel}"]).Spec;
        Assert.Equal([problem], spec.Validate(hostMemoryBytes: host));
        Assert.Empty(spec.Validate(hostMemoryBytes: spec.MemoryBytes));
    }

    [Fact]
    public void SplitSparseImageByPathAlone_HasNoProblems_AndContradictingOptionsAreOne()
    {
        string dir = Directory.CreateTempSubdirectory("specdisk").FullName;
        try
        {
            string img = Path.Combine(dir, "web.img");
            Xhyve.Vmm.Storage.DiskImages.Create(BlockDeviceOptions.ParseOptions(img, ["size=8M", "split=2M", "sparse"]));
            Assert.Empty(Problems("-s", $"3,virtio-blk,{img}", "-f", $"kexec,{Kernel}"));
            Assert.Equal([$"-s 0:3:0,virtio-blk,{img},size=16M: size=16M: the image {img} is 8 MiB (as its web.img.desc records)"],
                Problems("-s", $"3,virtio-blk,{img},size=16M", "-f", $"kexec,{Kernel}"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ValidLine_HasNoProblems()
    {
        Assert.Empty(Problems("-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"kexec,{Kernel}"));
    }

    [Theory]
    [InlineData("-s 0,hostbridge -s 0,lpc", "already used by hostbridge")]
    [InlineData("-s 1:31:0,lpc", "lpc must be on bus 0")]
    [InlineData("-s 3,frobnicator", "unknown emulation 'frobnicator'")]
    [InlineData("-s 3,virtio-9p,x", "not supported yet")]
    [InlineData("-s 3,ahci-cd,/no/such/x.iso", "-s 0:3:0,ahci-cd,/no/such/x.iso: medium /no/such/x.iso: file not found")]
    [InlineData("-s 3,ahci-hd,/no/such/disk.img", "image /no/such/disk.img not found")]
    [InlineData("-s 3,ahci,cd:,hd:/no/such/disk.img", "image /no/such/disk.img not found")]
    [InlineData("-s 3,virtio-blk,/tmp/d.img,size=1M -s 4,ahci-hd,/tmp/d.img", "/tmp/d.img is already the disk of -s 0:3:0,virtio-blk")]
    [InlineData("-s 3,virtio-blk,/no/such/disk.img", "image /no/such/disk.img not found (give size= to create one)")]
    [InlineData("-s 3,virtio-blk,/tmp/d.img,size=1M -s 4,virtio-blk,/tmp/d.img", "/tmp/d.img is already the disk of -s 0:3:0,virtio-blk")]
    [InlineData("-s 3,virtio-blk,/tmp/d.img,cache=none", "cache=none: unknown block option")]
    [InlineData("-s 3,virtio-rnd,x", "virtio-rnd takes no options")]
    [InlineData("-s 31,lpc -l com1,stdio -l com2,stdio", "stdio can be used by only one device")]
    [InlineData("-l com1,stdio", "add -s 31,lpc")]
    [InlineData("-c 9", "exceeds the host limit of 8")]
    [InlineData("-m 1M", "below the minimum")]
    [InlineData("-m 4097k", "multiple of 4 KiB")]
    [InlineData("-c 2 -p 5:0", "vCPU 5 does not exist")]
    [InlineData("-p 0:4096", "host CPU 4096 does not exist")]
    [InlineData("-g 1234", "gdb stub is not supported yet")]
    [InlineData("-s 0,hostbridge,extra", "'extra': unknown option (hostbridge takes model=i440fx|q35")]
    public void Problem_IsReportedNamingTheFlag(string commandLine, string expected)
    {
        var problems = Problems([.. commandLine.Split(' '), "-f", $"kexec,{Kernel}"]);
        Assert.Contains(problems, p => p.Contains(expected));
    }

    [Fact]
    public void MissingFirmwareAndFiles_AreReported()
    {
        Assert.Contains(Problems(), p => p.StartsWith("-f: no firmware"));
        Assert.Contains(Problems("-f", "kexec,/no/such/kernel,/no/such/initrd"), p => p.Contains("/no/such/kernel: file not found"));
        Assert.Contains(Problems("-f", "kexec,/no/such/kernel,/no/such/initrd"), p => p.Contains("/no/such/initrd: file not found"));
        Assert.Contains(Problems("-f", "multiboot,/tmp"), p => p.Contains("is a directory"));
    }

    [Fact]
    public void PlatformFlags_AreAcceptedWithoutProblems()
    {
        var spec = CommandLineParser.Parse(["-A", "-w", "-W", "-x", "-H", "-P", "-f", $"kexec,{Kernel}"]).Spec;
        Assert.Empty(spec.Validate(hostMaxVcpus: 8));
        Assert.True(spec.Acpi && spec.IgnoreUnknownMsrs && spec.SingleVectorMsi && spec.X2Apic);
    }

    [Fact]
    public void EveryProblem_IsReported_NotJustTheFirst()
    {
        Assert.True(Problems("-c", "9", "-m", "1M", "-s", "3,nope").Count >= 4);
    }
}
