using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Tests.Native;

/// <summary>The engine runs without .NET's resource strings: a runtime message arrives as a resource key and must be
/// printed as words (issue 11, item 6).</summary>
public sealed class SystemErrorsTests
{
    public static TheoryData<Exception, string> KeyedExceptions => new()
    {
        { new DirectoryNotFoundException("IO_PathNotFound_Path, /vm/disk.img"), "/vm/disk.img: no such file or directory" },
        { new FileNotFoundException("IO_FileNotFound_FileName, /vm/disk.img"), "/vm/disk.img: no such file or directory" },
        { new UnauthorizedAccessException("UnauthorizedAccess_IODenied_Path, /vm/disk.img"), "/vm/disk.img: permission denied" },
        { new OverflowException("Arg_OverflowException"), "/vm/disk.img: a size or count is too large for the engine" },
        { new IOException("IO_SharingViolation_File, /vm/disk.img", 28), "/vm/disk.img: No space left on device" },
    };

    [Theory]
    [MemberData(nameof(KeyedExceptions))]
    public void ResourceKey_IsReplacedByWords_NamingTheInput(Exception e, string expected)
    {
        string message = SystemErrors.Describe("/vm/disk.img", e);
        Assert.Equal(expected, message);
        Assert.False(SystemErrors.IsResourceKey(message));
    }

    [Theory]
    [InlineData("-F /run/x.pid: cannot create: Permission denied")]
    [InlineData("/vm/disk.img: LUT is 12 bytes; a 4096-byte disk of 512-byte sectors needs 32")]
    [InlineData("KVM_SET_USER_MEMORY_REGION (slot 1 at 0x100000000) failed: Invalid argument (errno 22)")]
    public void OwnMessage_PassesThrough(string message)
    {
        Assert.Equal(message, SystemErrors.Describe(new IOException(message)));
    }
}
