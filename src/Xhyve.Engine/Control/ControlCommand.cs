using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Xhyve.Vmm.Serial;

namespace Xhyve.Engine.Control;

/// <summary>
/// `xhyve ctl [--timeout SECONDS] SOCKET COMMAND`: the command-line client of the control API. Prints the JSON reply and exits
/// 0 when it says ok; "console" then bridges the terminal to the guest's serial console (Ctrl-] detaches).
/// </summary>
public static class ControlCommand
{
    public const string Usage = """
        Usage: xhyve ctl [--timeout SECONDS] SOCKET COMMAND
          COMMAND: state | config | counters | pause | resume | powerbutton | reboot | reset | stop | help
                 | wait-running [timeout_ms=N]   (replies once the VM runs; waits for the socket to appear, and
                                                  without timeout_ms for the VM up to --timeout)
                 | media | media [DRIVE] eject | media [DRIVE] insert PATH   (CD/DVD drives)
                 | console [history]   (interactive; Ctrl-] detaches)
          --timeout SECONDS   how long to wait to connect and for the reply (default 10)
        Prints the engine's JSON reply; exit status 0 when it says "ok": true, 1 otherwise.
        """;

    /// <summary>Long enough for a busy engine, short enough that a script never hangs on an engine that is stopped
    /// (SIGSTOP) or wedged.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private const byte DetachKey = 0x1D;   // Ctrl-], as telnet and virsh console use

    public static int Run(string[] args)
    {
        if (args is ["-h" or "--help"]) { Console.Out.Write(Usage); return 0; }
        var timeout = DefaultTimeout;
        if (args.Length > 0 && (args[0] == "--timeout" || args[0].StartsWith("--timeout=", StringComparison.Ordinal)))
        {
            if (ReadTimeout(args, out timeout, out int used) is { } bad) return Fail(bad);
            args = args[used..];
        }
        if (args.Length < 2) { Console.Error.Write(Usage); return 1; }
        string path = args[0], command = string.Join(' ', args[1..]);
        // The endpoint constructor throws for these; say it in one line instead.
        if (ControlServer.SocketPathProblem(path) is { } problem) return Fail($"'{path}': {problem}");
        // The engine reads one command per line: a line break would run a second command the user did not see.
        if (command.AsSpan().IndexOfAny('\n', '\r') >= 0)
            return Fail($"the command '{command.ReplaceLineEndings("\\n")}' has a line break; give one command per call");
        if (string.IsNullOrWhiteSpace(command))
            return Fail($"the command is empty (one of: {string.Join(", ", ControlServer.Commands)})");

        // Parsed as the engine parses it, so a command given as one quoted argument ("wait-running timeout_ms=5") counts.
        var request = ControlProtocol.Parse(command.Trim());
        bool waiting = request is { Command: "wait-running" };
        if (waiting && request!.Error is { } refused) return Fail(refused);
        var budget = waiting ? WaitBudget(request!, timeout) : timeout;

        using var deadline = new CancellationTokenSource(budget);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Socket socket;
        try { socket = Connect(path, deadline.Token, untilServed: waiting); }
        catch (OperationCanceledException)
        {
            return Fail($"cannot connect to {path}: the engine did not accept within {Seconds(budget)} " +
                "(stopped or wedged? --timeout SECONDS waits longer)");
        }
        catch (SocketException e) { return Fail($"cannot connect to {path}: {ConnectProblem(path, e)}"); }
        // The time spent waiting for the socket comes out of the engine's wait, not out of the slack for its reply.
        if (waiting) command = WaitCommand(request!, budget - clock.Elapsed);
        using var _ = socket;
        string? reply;
        try
        {
            var line = Encoding.UTF8.GetBytes(command + "\n");
            socket.SendAsync(line, SocketFlags.None, deadline.Token).AsTask().GetAwaiter().GetResult();
            reply = ReadLine(socket, deadline.Token);
        }
        catch (OperationCanceledException)
        {
            return Fail($"{path}: no reply within {Seconds(budget)} " +
                "(the engine may be stopped or wedged; --timeout SECONDS waits longer)");
        }
        catch (SocketException e) { return Fail($"{path}: {StripEndpoint(e.Message, path)}"); }
        if (reply == null) return Fail($"{path}: the engine closed the connection without replying");
        Console.Out.WriteLine(reply);
        bool ok = reply.Contains("\"ok\":true", StringComparison.Ordinal);
        if (!ok) return 1;
        if (request is { Command: "console", Error: null }) Bridge(socket);
        return 0;
    }

    /// <summary>The second "wait-running" leaves between the engine's wait and this client's deadline, so the engine's
    /// own answer (running, or why not) arrives before this client gives up.</summary>
    private static readonly TimeSpan WaitSlack = TimeSpan.FromSeconds(1);

    /// <summary>How long "wait-running" may take in all, connecting included: --timeout, or timeout_ms when longer,
    /// plus <see cref="WaitSlack"/>.</summary>
    private static TimeSpan WaitBudget(ControlRequest request, TimeSpan timeout) =>
        (request.TimeoutMs is int ms && ms > timeout.TotalMilliseconds ? TimeSpan.FromMilliseconds(ms) : timeout) + WaitSlack;

    /// <summary>"wait-running" as sent once connected with <paramref name="left"/> of the budget: the engine waits
    /// timeout_ms (--timeout unless given), cut to what is left minus the slack.</summary>
    private static string WaitCommand(ControlRequest request, TimeSpan left)
    {
        double wanted = request.TimeoutMs ?? double.MaxValue;
        long ms = (long)Math.Clamp(Math.Min(wanted, (left - WaitSlack).TotalMilliseconds), 1, ControlProtocol.MaxWaitMs);
        return $"wait-running timeout_ms={ms}";
    }

    /// <summary>Reads "--timeout SECONDS" or "--timeout=SECONDS" at the start of <paramref name="args"/>: why it is
    /// unusable, or null with the timeout and how many arguments it took.</summary>
    private static string? ReadTimeout(string[] args, out TimeSpan timeout, out int used)
    {
        timeout = DefaultTimeout;
        bool joined = args[0].Length > "--timeout".Length;
        used = joined ? 1 : 2;
        string? value = joined ? args[0]["--timeout=".Length..] : args.Length > 1 ? args[1] : null;
        if (value == null) return "--timeout needs a number of seconds";
        // Positive, finite and at most a day, so TimeSpan and the cancellation timer take it.
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds > 0 && seconds <= 86_400))
            return $"--timeout '{value}': not a number of seconds between 0 and 86400";
        timeout = TimeSpan.FromSeconds(seconds);
        return null;
    }

    /// <summary>Connects, waiting while the engine's queue of connections it has not accepted yet is full: a
    /// non-blocking connect to a Unix socket fails with EAGAIN then, where a blocking one would wait. With
    /// <paramref name="untilServed"/> ("wait-running", typically right after launching the engine) it also waits
    /// while the socket is not there yet (ENOENT, which the runtime reports as AddressNotAvailable) or not listening
    /// yet (refused), up to the deadline.</summary>
    private static Socket Connect(string path, CancellationToken cancel, bool untilServed = false)
    {
        var endpoint = new UnixDomainSocketEndPoint(path);
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.ConnectAsync(endpoint, cancel).AsTask().GetAwaiter().GetResult();
                return socket;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.TryAgain
                || (untilServed && e.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused))
            {
                socket.Dispose();
                cancel.WaitHandle.WaitOne(20);
                cancel.ThrowIfCancellationRequested();
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"xhyve ctl: {message}");
        return 1;
    }

    private static string Seconds(TimeSpan t) => $"{t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s";

    /// <summary>Words for a failed connect. The runtime reports a missing path as "Cannot assign requested address"
    /// (ENOENT is mapped to AddressNotAvailable), so the path is looked at instead.</summary>
    private static string ConnectProblem(string path, SocketException e)
    {
        // Another user cannot even look into the engine's folder: that is "Permission denied", not a missing file.
        if (e.SocketErrorCode != SocketError.AccessDenied && !Path.Exists(path))
            return $"no such file (is the engine running with --control-socket {path}?)";
        if (Directory.Exists(path)) return "is a folder, not a socket";
        if (e.SocketErrorCode == SocketError.ConnectionRefused) return "connection refused (no engine is serving it, or it is not a socket)";
        return $"{StripEndpoint(e.Message, path)} (is the engine running with --control-socket {path}?)";
    }

    /// <summary>The runtime appends the endpoint to a socket error's message; ours names the path once, first.</summary>
    private static string StripEndpoint(string message, string path) =>
        message.EndsWith(" " + path, StringComparison.Ordinal) ? message[..^(path.Length + 1)] : message;

    /// <summary>Reads the reply line a byte at a time, so nothing that follows it (console output) is consumed.</summary>
    private static string? ReadLine(Socket socket, CancellationToken cancel)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (socket.ReceiveAsync(one, SocketFlags.None, cancel).AsTask().GetAwaiter().GetResult() == 1)
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
