using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Xhyve.Management.Engine;

namespace Xhyve.Management.Tests;

[CollectionDefinition(nameof(ManagementPathTests), DisableParallelization = true)]
public sealed class ManagementPathCollection;

/// <summary>The pieces of the per-VM management path made cheaper for issue 16 (h): inotify instances kept for the next
/// folder watch, and control replies read by peeking rather than a byte at a time. Each still does what it did. Not run
/// beside other classes: the kept instances are shared by the process, and the counts here would see other tests' watches.</summary>
[Collection(nameof(ManagementPathTests))]
public sealed class ManagementPathTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("xhyve-path").FullName;

    public void Dispose() => Directory.Delete(_root, true);

    private string Folder(string name) => Directory.CreateDirectory(Path.Combine(_root, name)).FullName;

    [Fact]
    public void A_kept_inotify_instance_wakes_its_next_watch_for_a_file_created_in_the_new_folder()
    {
        string first = Folder("first"), second = Folder("second");
        using (var watch = FolderWatch.Open(first)) File.WriteAllText(Path.Combine(first, "before"), "");   // left queued
        Assert.InRange(FolderWatch.IdleCount, 1, FolderWatch.MaxIdle);

        using var next = FolderWatch.Open(second);
        var clock = Stopwatch.StartNew();
        var creator = new Thread(() => { Thread.Sleep(50); File.WriteAllText(Path.Combine(second, "control.sock"), ""); });
        creator.Start();
        next.Wait(TimeSpan.FromSeconds(30));
        // Looked at as the wait returns: an event left from the first folder would wake it before the file exists.
        bool created = File.Exists(Path.Combine(second, "control.sock"));
        var waited = clock.Elapsed;
        creator.Join();
        Assert.True(created, $"the wait returned after {waited.TotalMilliseconds:F0} ms, before the file was created (a stale event of the first folder)");
        Assert.True(waited < TimeSpan.FromSeconds(30), $"the wait ran its whole bound ({waited})");
    }

    [Fact]
    public void No_more_than_MaxIdle_inotify_instances_are_kept()
    {
        var watches = Enumerable.Range(0, FolderWatch.MaxIdle + 3).Select(i => FolderWatch.Open(Folder($"w{i}"))).ToList();
        foreach (var w in watches) w.Dispose();
        Assert.Equal(FolderWatch.MaxIdle, FolderWatch.IdleCount);
    }

    [Fact]
    public void A_watch_without_inotify_returns_from_a_negative_wait_instead_of_sleeping_forever()
    {
        // No such folder: inotify_add_watch fails and the watch falls back to sleeping, where -1 ms would mean forever.
        using var watch = FolderWatch.Open(Path.Combine(_root, "missing"));
        foreach (double ms in new[] { -1.5, -20 })
        {
            Exception? failed = null;
            var wait = new Thread(() =>
            {
                try { watch.Wait(TimeSpan.FromMilliseconds(ms)); }
                catch (Exception e) { failed = e; }
            }) { IsBackground = true };
            wait.Start();
            Assert.True(wait.Join(TimeSpan.FromSeconds(30)), $"a wait of {ms} ms did not return");
            Assert.Null(failed);
        }
    }

    /// <summary>A one-connection server on a Unix socket that answers the first line it reads with <paramref name="reply"/>,
    /// written in pieces of <paramref name="chunk"/> bytes.</summary>
    private (string Path, Thread Served) Serve(byte[] reply, int chunk)
    {
        string path = Path.Combine(_root, $"s{Guid.NewGuid():N}"[..12]);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var served = new Thread(() =>
        {
            using (listener)
            using (var peer = listener.Accept())
            {
                var one = new byte[1];
                while (peer.Receive(one) == 1 && one[0] != '\n') { }
                for (int at = 0; at < reply.Length; at += chunk)
                {
                    peer.Send(reply.AsSpan(at, Math.Min(chunk, reply.Length - at)));
                    Thread.Sleep(1);
                }
                peer.Shutdown(SocketShutdown.Send);
                while (peer.Receive(one) > 0) { }   // until the client closes
            }
        }) { IsBackground = true };
        served.Start();
        return (path, served);
    }

    [Fact]
    public void A_reply_is_read_up_to_its_newline_and_what_follows_it_is_left_on_the_connection()
    {
        var (path, served) = Serve(Encoding.UTF8.GetBytes("{\"ok\":true,\"state\":\"Running\"}\nconsole bytes after the reply"), chunk: 7);
        using (var client = new ControlClient(path, TimeSpan.FromSeconds(10)))
        {
            var socket = client.OpenConsole(history: false);
            var rest = new MemoryStream();
            var buffer = new byte[64];
            for (int n; (n = socket.Receive(buffer)) > 0;) rest.Write(buffer, 0, n);
            Assert.Equal("console bytes after the reply", Encoding.UTF8.GetString(rest.ToArray()));
        }
        Assert.True(served.Join(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void A_reply_longer_than_the_first_buffer_arriving_in_pieces_is_read_whole()
    {
        string long_ = new('x', 5000);
        var (path, served) = Serve(Encoding.UTF8.GetBytes($"{{\"ok\":true,\"text\":\"{long_}\"}}\n"), chunk: 999);
        using (var client = new ControlClient(path, TimeSpan.FromSeconds(10)))
            Assert.Equal(long_, client.Ask("state").GetProperty("text").GetString());
        Assert.True(served.Join(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void A_connection_closed_before_the_newline_is_an_error_naming_the_command()
    {
        var (path, served) = Serve(Encoding.UTF8.GetBytes("{\"ok\":tr"), chunk: 3);
        using (var client = new ControlClient(path, TimeSpan.FromSeconds(10)))
        {
            var e = Assert.Throws<EngineException>(() => client.Ask("state"));
            Assert.Contains("'state'", e.Message);
        }
        Assert.True(served.Join(TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("xhyve\0--control-socket\0/s/vms/a/control.sock\0", true)]
    [InlineData("/s/vms/a/control.sock\0", true)]
    [InlineData("xhyve\0--control-socket\0/s/vms/a/control.sock2\0", false)]
    [InlineData("xhyve\0--x=/s/vms/a/control.sock\0", false)]
    [InlineData("xhyve\0/s/vms/ba/control.sock\0", false)]
    [InlineData("", false)]
    public void An_engine_is_recognised_by_its_socket_as_a_whole_argument_only(string cmdline, bool expected) =>
        Assert.Equal(expected, EngineHost.HasArgument(cmdline, "/s/vms/a/control.sock"));

    private static (int Status, string Said) RunShell(string script)
    {
        var (status, stderr) = SessionLauncher.Run("sh", ["-c", script]);
        using var reader = new StreamReader(stderr);
        return (status, reader.ReadToEnd());
    }

    [Fact]
    public void The_launcher_passes_this_process_environment_and_reads_standard_error_and_the_exit_status()
    {
        // Set through .NET (as pwsh's $env: does), which libc's own environ does not see.
        Environment.SetEnvironmentVariable("XHYVE_LAUNCHER_TEST", "value from .NET");
        try
        {
            var (status, said) = RunShell("echo \"$XHYVE_LAUNCHER_TEST\" >&2; exit 3");
            Assert.Equal(3, status);
            Assert.Equal("value from .NET\n", said);
        }
        finally { Environment.SetEnvironmentVariable("XHYVE_LAUNCHER_TEST", null); }
    }

    [Fact]
    public void The_launched_program_starts_with_no_signal_blocked_or_ignored()
    {
        // .NET ignores SIGPIPE in this process; a program started the way Process starts one has it at its default. Only
        // glibc's two internal signals (32 and 33, which glibc itself installs handlers for when it uses them) are left
        // ignored by its posix_spawn.
        var (status, said) = RunShell("grep -E '^Sig(Blk|Ign):' /proc/self/status >&2");
        Assert.Equal(0, status);
        var masks = said.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToDictionary(l => l.Split(':')[0], l => Convert.ToUInt64(l.Split('\t')[1], 16));
        Assert.Equal(0UL, masks["SigBlk"]);
        const ulong GlibcInternal = (1UL << 31) | (1UL << 32);
        Assert.Equal(0UL, masks["SigIgn"] & ~GlibcInternal);
    }

    [Fact]
    public void A_launched_program_killed_by_a_signal_reports_128_plus_the_signal()
    {
        Assert.Equal(128 + 15, RunShell("kill -TERM $$").Status);
    }

    [Fact]
    public void A_program_that_does_not_exist_is_an_error_naming_it()
    {
        var e = Assert.Throws<EngineException>(() => SessionLauncher.Run("xhyve-no-such-program", []));
        Assert.Contains("xhyve-no-such-program", e.Message);
    }
}
