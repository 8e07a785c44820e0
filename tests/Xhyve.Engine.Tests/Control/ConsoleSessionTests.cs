using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Xhyve.Engine.Control;
using Xhyve.Engine.Runtime;
using Xhyve.Engine.Tests.Support;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Engine.Tests.Control;

/// <summary>Console sessions of the control API (docs/control-api.md, "Console") hold nothing once their client is
/// gone: a guest that never reads its input must not pin a thread or a descriptor per session.</summary>
public sealed class ConsoleSessionTests(Xunit.Abstractions.ITestOutputHelper log) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xhyve-console").FullName;   // created 0700
    private string Socket => Path.Combine(_dir, "ctl.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    private const int Sessions = 40;

    /// <summary>The "hello" guest with spin=1 prints "ready" and never reads COM1: its 16-byte receive FIFO fills
    /// and stays full.</summary>
    private RunningEngine StartSpinningGuest() => EngineProcess.Start(
        ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1",
         "--control-socket", Socket]);

    private static int Threads(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/task").Length;
    private static int Fds(int pid) => Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;

    private static System.Net.Sockets.Socket Connect(string path)
    {
        var s = new System.Net.Sockets.Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try { s.Connect(new UnixDomainSocketEndPoint(path)); return s; }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(20)) { Thread.Sleep(20); }
        }
    }

    /// <summary>The engine still serves its control socket, and "stop" ends it at once.</summary>
    private void StopThroughTheControlSocket(RunningEngine p)
    {
        using var c = Connect(Socket);
        c.Send("stop\n"u8);
        Assert.Contains("\"ok\":true", ReadLine(c));
        Assert.True(p.WaitForExit(10_000));
    }

    private static string ReadLine(System.Net.Sockets.Socket s)
    {
        var line = new List<byte>();
        var one = new byte[1];
        s.ReceiveTimeout = 20_000;
        while (s.Receive(one) == 1 && one[0] != '\n') line.Add(one[0]);
        return Encoding.UTF8.GetString(line.ToArray());
    }

    /// <summary>Opens a console session and types more than the guest's FIFO holds (the rest waits for the guest).</summary>
    private static System.Net.Sockets.Socket OpenTypingSession(string path)
    {
        var s = Connect(path);
        s.Send("console\n"u8);
        Assert.Contains("\"console\":\"com1\"", ReadLine(s));
        s.Send(Enumerable.Repeat((byte)'x', 2048).ToArray());
        return s;
    }

    /// <summary>Polls until <paramref name="done"/> holds or the time is up; whether it held.</summary>
    private static bool Eventually(Func<bool> done, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (!done())
        {
            if (clock.Elapsed > within) return false;
            Thread.Sleep(100);
        }
        return true;
    }

    [SkippableFact]
    public void ConsoleSessions_TheGuestNeverReads_ReleaseTheirThreadsAndFds_WhenTheirClientsClose()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartSpinningGuest();
        EngineProcess.ReadUntil(p, "ready", TimeSpan.FromSeconds(30));
        // One session first, so the runtime's lazily made threads and descriptors (thread pool, epoll) exist in the baseline.
        OpenTypingSession(Socket).Dispose();
        Thread.Sleep(1000);
        int baseThreads = Threads(p.Id), baseFds = Fds(p.Id);

        var sessions = Enumerable.Range(0, Sessions).Select(_ => OpenTypingSession(Socket)).ToList();
        // Every session is open and blocked on the guest: one descriptor each, and no thread each.
        Assert.True(Eventually(() => Fds(p.Id) >= baseFds + Sessions, TimeSpan.FromSeconds(10)), $"fds {Fds(p.Id)}, baseline {baseFds}");
        Thread.Sleep(2000);   // time for a starved thread pool to add threads, if sessions held them
        int openThreads = Threads(p.Id), openFds = Fds(p.Id);
        foreach (var s in sessions) s.Dispose();

        // Threads: a handful more is the thread pool growing under load (2 cores shared with parallel tests); it retires
        // idle threads only after about 20 s. One per session, as before the fix, is Sessions more.
        int threadSlack = Sessions / 4;
        bool released = Eventually(() => Fds(p.Id) <= baseFds + 2 && Threads(p.Id) <= baseThreads + threadSlack, TimeSpan.FromSeconds(10));
        log.WriteLine($"{Sessions} sessions: fds {baseFds} -> open {openFds} -> closed {Fds(p.Id)}; " +
            $"threads {baseThreads} -> open {openThreads} -> closed {Threads(p.Id)}");
        Assert.True(released, $"after closing {Sessions} sessions: fds {Fds(p.Id)} (baseline {baseFds}), " +
            $"threads {Threads(p.Id)} (baseline {baseThreads}, {openThreads} while open)");
        Assert.True(openThreads <= baseThreads + threadSlack, $"{openThreads} threads while {Sessions} sessions were open (baseline {baseThreads})");

        // The engine still serves, and stops at once.
        StopThroughTheControlSocket(p);
    }

    [SkippableFact]
    public void ConsoleInput_TheGuestNeverReads_WaitsInTheClientsSocket_NotInTheEngine()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        using var p = StartSpinningGuest();
        EngineProcess.ReadUntil(p, "ready", TimeSpan.FromSeconds(30));
        using var s = Connect(Socket);
        s.Send("console\n"u8);
        Assert.Contains("\"console\":\"com1\"", ReadLine(s));
        // Send until the engine stops taking input: what it took is bounded by the two socket buffers, not by memory.
        s.Blocking = false;
        var chunk = new byte[64 * 1024];
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(5))
        {
            int n = s.Send(chunk, 0, chunk.Length, SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock) { Thread.Sleep(50); if (s.Poll(200_000, SelectMode.SelectWrite)) continue; break; }
            Assert.Equal(SocketError.Success, error);
            sent += n;
        }
        log.WriteLine($"the engine took {sent} bytes of input before the client's sends blocked");
        Assert.True(sent < 4L << 20, $"the engine took {sent} bytes of input a guest never reads");
        StopThroughTheControlSocket(p);
    }

    [SkippableFact]
    public void ConsoleSessions_WaitingOnTheGuest_AreClosed_WhenTheEngineStopsServing()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        // Built in this process and never started, so the guest cannot read its FIFO; disposing the server is what
        // the engine does when it stops.
        var spec = CommandLineParser.Parse(["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,null",
            "-f", $"multiboot,{EngineProcess.Guest("hello")},,spin=1"]).Spec;
        using var hypervisor = KvmHypervisor.Open();
        var runner = new VmRunner(spec.VcpuPinning);
        using var machine = new Xhyve.Vmm.VmBuilder(spec, hypervisor, runner).Build();
        var server = ControlServer.Start(Socket, machine, runner, spec);
        var sessions = Enumerable.Range(0, 5).Select(_ => OpenTypingSession(Socket)).ToList();
        try
        {
            server.Dispose();
            foreach (var s in sessions)
            {
                s.ReceiveTimeout = 5_000;
                // Closed by the engine: end of stream, or a reset because input it never read was still queued.
                // A timeout (the session still open) fails.
                try { Assert.Equal(0, s.Receive(new byte[256])); }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset) { }
            }
        }
        finally { foreach (var s in sessions) s.Dispose(); }
    }
}
