using Xhyve.Engine.Control;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Control;

/// <summary>
/// The control socket's folder (docs/control-api.md, "Who can connect"): the owner of a folder can rename or replace
/// what is in it whatever its mode, so a folder of another user is refused even when it is 0700. The other user's
/// folder is made with chown inside the test's own temporary folder.
/// </summary>
public sealed class ControlFolderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-ctlfolder").FullName;   // created 0700

    public void Dispose() => Directory.Delete(_dir, true);

    private const string Nobody = "65534";

    /// <summary>A 0700 folder inside the test folder that belongs to uid 65534.</summary>
    private string ForeignFolder()
    {
        string folder = Path.Combine(_dir, "foreign");
        Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var chown = EngineProcess.RunProgram("chown", [$"{Nobody}:{Nobody}", folder], 10);
        Assert.True(chown.ExitCode == 0, chown.ToString());
        return folder;
    }

    private static bool IsRoot => Environment.UserName == "root";

    [SkippableFact]
    public void CheckPath_AnotherUsersOwnerOnlyFolder_IsRefused_NamingTheFolderAndItsOwner()
    {
        Skip.IfNot(IsRoot, "giving a folder to another user needs root");
        string folder = ForeignFolder();
        string socket = Path.Combine(folder, "ctl.sock");
        var e = Assert.Throws<IOException>(() => ControlServer.CheckPath(socket));
        Assert.Equal($"--control-socket {socket}: the folder {folder} belongs to uid {Nobody}, not to this user (uid 0); " +
            "its owner could replace the socket, so the control socket needs a folder of this user's own", e.Message);
    }

    [SkippableFact]
    public void Engine_WithItsSocketInAnotherUsersOwnerOnlyFolder_RefusesToStart_AndCreatesNoSocket()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(IsRoot, "giving a folder to another user needs root");
        string folder = ForeignFolder();
        string socket = Path.Combine(folder, "ctl.sock");
        var run = EngineProcess.RunGuest("hello", extra: ["--control-socket", socket], timeoutSeconds: 30);
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Equal($"xhyve: --control-socket {socket}: the folder {folder} belongs to uid {Nobody}", run.Stderr.Split(',')[0]);
        Assert.Single(run.Stderr.TrimEnd('\n').Split('\n'));
        Assert.DoesNotContain("XHYVE-TEST", run.Stdout);   // refused before the guest ran
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public void CheckPath_AFolderOfThisUser_IsAccepted()
    {
        ControlServer.CheckPath(Path.Combine(_dir, "ctl.sock"));
    }
}
