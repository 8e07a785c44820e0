using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>
/// The engine needs no root: read/write access to /dev/kvm (the `kvm` group on Debian) is enough
/// (docs/security.md). The test runs the engine as `nobody` against a private copy of the KVM device
/// node made in its own folder and bind-mounted over /dev/kvm in a private mount namespace, so the
/// host's /dev/kvm and its permissions are never touched.
/// </summary>
public sealed class UnprivilegedUserTests
{
    private const int Nobody = 65534;
    private const int KvmGroup = 65533;   // stands for the kvm group: a group that is not the user's own

    [SkippableFact]
    public void Engine_RunsAGuestAsAnotherUser_WithOnlyGroupAccessToKvm_AndWithoutItSaysPermissionDenied()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.IfNot(Environment.IsPrivilegedProcess, "needs root to make the private KVM device node and switch to another user");
        foreach (var tool in new[] { "/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/mknod" })
            Skip.IfNot(File.Exists(tool), $"{tool} is absent (util-linux/coreutils)");

        string dir = Directory.CreateTempSubdirectory("nonroot").FullName;
        try
        {
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
            string node = Path.Combine(dir, "kvm");
            Run("/usr/bin/mknod", [node, "c", "10", "232"]);
            Run("/bin/chgrp", [KvmGroup.ToString(), node]);
            File.SetUnixFileMode(node, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);

            // Where the build lives under a folder the other user cannot enter (a clone in /root), the
            // test cannot run the engine as that user: say so rather than fail on the layout.
            var access = AsNobody(node, "/bin/sh", "-c", "test -x \"$0\" && test -r \"$1\"", EngineProcess.Executable, EngineProcess.Guest("hello"));
            Skip.If(access.ExitCode != 0, $"user {Nobody} cannot run {EngineProcess.Executable} or read the test guest (a folder above them is closed to other users)");

            var withGroup = AsNobody(node, EngineProcess.Executable, GuestArgs(), groups: $"{KvmGroup}");
            Assert.True(withGroup.Done, withGroup.ToString());
            Assert.Equal(2, withGroup.ExitCode);                                  // the hello guest resets

            var withoutGroup = AsNobody(node, EngineProcess.Executable, GuestArgs(), groups: $"{Nobody}");
            Assert.Equal(1, withoutGroup.ExitCode);
            Assert.Contains("/dev/kvm", withoutGroup.Stderr);
            Assert.Contains("ermission denied", withoutGroup.Stderr);
            Assert.DoesNotContain("   at ", withoutGroup.Stderr);                 // one line, no stack trace
        }
        finally { Directory.Delete(dir, true); }
    }

    private static string[] GuestArgs() =>
        ["-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,"];

    private static EngineRun AsNobody(string node, string program, params string[] args) => AsNobody(node, program, args, $"{Nobody}");

    private static EngineRun AsNobody(string node, string program, string[] args, string groups)
    {
        // unshare -m makes the new namespace's mounts private, so the bind mount never reaches the host.
        var script = "node=$0 groups=$1; shift; mount --bind \"$node\" /dev/kvm && exec setpriv --reuid=" + Nobody + " --regid=" + Nobody + " --groups=\"$groups\" \"$@\"";
        return EngineProcess.RunProgram("/usr/bin/unshare", ["-m", "/bin/sh", "-c", script, node, groups, program, .. args], 60);
    }

    private static void Run(string program, string[] args)
    {
        var run = EngineProcess.RunProgram(program, args, 30);
        Assert.True(run.ExitCode == 0, $"{program} {string.Join(' ', args)}: {run}");
    }
}
