using System.Net.Sockets;
using System.Text;
using Xhyve.Vmm.Serial;

namespace Xhyve.Engine.Control;

/// <summary>
/// `xhyve ctl SOCKET COMMAND`: the command-line client of the control API. Prints the JSON reply and exits
/// 0 when it says ok; "console" then bridges the terminal to the guest's serial console (Ctrl-] detaches).
/// </summary>
public static class ControlCommand
{
    public const string Usage = """
        Usage: xhyve ctl SOCKET COMMAND
          COMMAND: state | config | counters | pause | resume | powerbutton | stop | help
                 | console [history]   (interactive; Ctrl-] detaches)
        Prints the engine's JSON reply; exit status 0 when it says "ok": true, 1 otherwise.
        """;

    private const byte DetachKey = 0x1D;   // Ctrl-], as telnet and virsh console use

    public static int Run(string[] args)
    {
        if (args.Length < 2 || args[0] is "-h" or "--help")
        {
            (args.Length < 2 && args is not ["-h" or "--help"] ? Console.Error : Console.Out).Write(Usage);
            return args is ["-h" or "--help"] ? 0 : 1;
        }
        string path = args[0], command = string.Join(' ', args[1..]);
        // The endpoint constructor throws for these; say it in one line instead.
        if (ControlServer.SocketPathProblem(path) is { } problem)
        {
            Console.Error.WriteLine($"xhyve ctl: '{path}': {problem}");
            return 1;
        }
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { socket.Connect(new UnixDomainSocketEndPoint(path)); }
        catch (SocketException e)
        {
            Console.Error.WriteLine($"xhyve ctl: cannot connect to {path}: {Xhyve.Vmm.Native.SystemErrors.Describe(e)} (is the engine running with --control-socket {path}?)");
            return 1;
        }
        socket.Send(Encoding.UTF8.GetBytes(command + "\n"));
        string? reply = ReadLine(socket);
        if (reply == null) { Console.Error.WriteLine($"xhyve ctl: {path}: the engine closed the connection without replying"); return 1; }
        Console.Out.WriteLine(reply);
        bool ok = reply.Contains("\"ok\":true", StringComparison.Ordinal);
        if (!ok) return 1;
        if (args[1] == "console") Bridge(socket);
        return 0;
    }

    /// <summary>Reads the reply line a byte at a time, so nothing that follows it (console output) is consumed.</summary>
    private static string? ReadLine(Socket socket)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (socket.Receive(one) == 1)
        {
            if (one[0] == '\n') return Encoding.UTF8.GetString(line.ToArray());
            line.Add(one[0]);
        }
        return null;
    }

    private static void Bridge(Socket socket)
    {
        bool terminal = !Console.IsInputRedirected;
        if (terminal) TerminalGuard.MakeRaw(0);
        try
        {
            var output = new Thread(() =>
            {
                var buffer = new byte[4096];
                using var stdout = Console.OpenStandardOutput();
                try
                {
                    int n;
                    while ((n = socket.Receive(buffer)) > 0) { stdout.Write(buffer, 0, n); stdout.Flush(); }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            }) { IsBackground = true };
            output.Start();
            using var stdin = Console.OpenStandardInput();
            var keys = new byte[256];
            int got;
            while (output.IsAlive && (got = stdin.Read(keys, 0, keys.Length)) > 0)
            {
                int detach = terminal ? Array.IndexOf(keys, DetachKey, 0, got) : -1;
                socket.Send(keys, 0, detach < 0 ? got : detach, SocketFlags.None);
                if (detach >= 0) break;
            }
            socket.Shutdown(SocketShutdown.Send);
            if (!terminal) output.Join(TimeSpan.FromSeconds(2));   // a script's input ended: let the last output through
        }
        finally { if (terminal) TerminalGuard.RestoreAll(); }
    }
}
