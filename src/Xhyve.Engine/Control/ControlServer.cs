using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Xhyve.Engine.Runtime;
using Xhyve.Vmm;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Serial;

namespace Xhyve.Engine.Control;

/// <summary>
/// The engine's control API (docs/control-api.md): a Unix socket, owner-only, in an owner-only folder.
/// A client sends one command per line and gets one JSON object per line back; "console" turns the
/// connection into the raw serial console (guest output out, keystrokes in).
/// </summary>
public sealed class ControlServer : IDisposable
{
    public const int MaxLine = ControlProtocol.MaxLine;
    private const UnixFileMode OwnerOnlyFolder = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode OwnerOnlySocket = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly string _path;
    private readonly Socket _listener;
    private readonly EngineLifecycle _lifecycle;
    private readonly EngineConfiguration _configuration;
    private readonly CancellationTokenSource _stop = new();

    private ControlServer(string path, Socket listener, EngineLifecycle lifecycle, EngineConfiguration configuration)
    {
        _path = path; _listener = listener; _lifecycle = lifecycle; _configuration = configuration;
    }

    /// <summary>The specification as it is now (with media changes).</summary>
    private VmSpecification Spec => _configuration.Spec;

    /// <summary>sun_path holds 108 bytes with the terminating NUL: a longer path cannot be bound or connected to.</summary>
    public const int MaxSocketPathBytes = 107;

    /// <summary>Why <paramref name="path"/> cannot name a Unix socket (empty or too long), or null when it can.</summary>
    public static string? SocketPathProblem(string path)
    {
        if (path.Length == 0) return "the socket path is empty";
        int bytes = Encoding.UTF8.GetByteCount(path);
        return bytes > MaxSocketPathBytes
            ? $"the path is {bytes} bytes long; a Unix socket path can have at most {MaxSocketPathBytes} (use a shorter folder)"
            : null;
    }

    /// <summary>Throws <see cref="IOException"/> naming the path unless the socket can be created there: the folder
    /// exists (the engine does not create it), belongs to this user, only this user can enter it, and the path is
    /// free or holds a socket no engine serves (one left by an engine that was killed). Anything else at the path is
    /// left alone.</summary>
    public static void CheckPath(string path)
    {
        path = Path.GetFullPath(path);
        // Checked first, on the absolute path the engine binds, so a long path is one line, not an exception from bind.
        if (SocketPathProblem(path) is { } problem) throw new IOException($"--control-socket {path}: {problem}");
        OutputFiles.CheckFolder(path, "--control-socket");
        string folder = Path.GetDirectoryName(path)!;
        // Its owner can rename or replace whatever is in it, the socket included, whatever the mode says.
        uint me = OutputFiles.EffectiveUserId;
        if (OutputFiles.OwnerOf(folder) is uint owner && owner != me)
            throw new IOException($"--control-socket {path}: the folder {folder} belongs to uid {owner}, not to this user (uid {me}); " +
                "its owner could replace the socket, so the control socket needs a folder of this user's own");
        var mode = File.GetUnixFileMode(folder);
        if ((mode & ~(OwnerOnlyFolder | UnixFileMode.SetGroup | UnixFileMode.SetUser | UnixFileMode.StickyBit)) != 0)
            throw new IOException($"--control-socket {path}: the folder {folder} can be entered by other users (mode {Convert.ToString((int)mode, 8)}); " +
                $"the control socket needs a folder only its owner can use (chmod 700 {folder})");
        if (OutputFiles.IsSocketOrAbsent(path, "--control-socket") && IsServed(path))
            throw new IOException($"--control-socket {path}: another engine is serving this socket");
    }

    /// <summary>Serves one machine and runner that are not restarted (a lifecycle with only them).</summary>
    public static ControlServer Start(string path, Machine machine, VmRunner runner, VmSpecification spec)
    {
        var lifecycle = new EngineLifecycle(OnReset.Exit);
        lifecycle.Attach(machine, runner);
        return Start(path, lifecycle, new EngineConfiguration(spec, lifecycle));
    }

    /// <summary>Binds the socket (after <see cref="CheckPath"/>, replacing only a stale socket) and starts accepting.
    /// Commands act on the lifecycle's current boot, so the socket outlives rebuilds of the machine.
    /// Throws <see cref="IOException"/> naming the path.</summary>
    public static ControlServer Start(string path, EngineLifecycle lifecycle, EngineConfiguration configuration)
    {
        path = Path.GetFullPath(path);
        CheckPath(path);
        if (OutputFiles.IsSocketOrAbsent(path, "--control-socket")) File.Delete(path);   // left behind by an engine that was killed
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        FileIdentity? identity;
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            identity = OutputFiles.IdentityOf(path);
            File.SetUnixFileMode(path, OwnerOnlySocket);
            listener.Listen(8);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"--control-socket {path}: {SystemErrors.Describe(e)}", e);
        }
        var server = new ControlServer(path, listener, lifecycle, configuration) { _identity = identity };
        _ = server.AcceptLoop();
        return server;
    }

    private static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { probe.Connect(new UnixDomainSocketEndPoint(path)); return true; }
        catch (SocketException) { return false; }
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            _ = Serve(client);
        }
    }

    private async Task Serve(Socket client)
    {
        using var _ = client;
        var buffer = new byte[MaxLine];
        int filled = 0;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                if (!ControlProtocol.TryTakeLine(buffer, ref filled, out string line))
                {
                    if (filled == buffer.Length) { await Send(client, Error($"command longer than {MaxLine} bytes")); return; }
                    int got = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stop.Token);
                    if (got == 0) return;
                    filled += got;
                    continue;
                }
                if (ControlProtocol.Parse(line) is not { } request) continue;
                if (request is { Command: "console", Error: null })
                {
                    await StreamConsole(client, request.History, buffer.AsMemory(0, filled));
                    return;
                }
                // A command that stops the VM still gets its reply: Dispose waits for replies in progress (a waiter is
                // woken by the lifecycle's end first, so it replies too).
                Interlocked.Increment(ref _replying);
                try
                {
                    var reply = request is { Command: "wait-running", Error: null }
                        ? await WaitRunning(request.TimeoutMs ?? ControlProtocol.DefaultWaitMs) : Execute(request);
                    await Send(client, reply);
                }
                finally { Interlocked.Decrement(ref _replying); }
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException or IOException) { }
    }

    /// <summary>Runs one command; the JSON reply.</summary>
    private byte[] Execute(ControlRequest request)
    {
        if (request.Error != null) return Error(request.Error);
        switch (request.Command)
        {
            case "state": return Reply(WriteState);
            case "config": return Reply(WriteConfig);
            case "counters":
                // Between boots there is no machine to count.
                return _lifecycle.Current is { } boot ? Reply(w => WriteCounters(w, boot)) : Error("the VM is restarting; ask again once it runs");
            case "pause":
                _lifecycle.Pause();
                return Reply(WriteState);
            case "resume":
                _lifecycle.Resume();
                return Reply(WriteState);
            case "powerbutton":
                return _lifecycle.PressPowerButton() is { } refused ? Error(refused) : Reply(WriteState);
            case "stop":
                _lifecycle.RequestStop(VmExitStatus.PoweredOff, "turned off through the control API");
                return Reply(WriteState);
            case "reset":
            {
                // resetsBefore is read with the request: by the time the state is written the runner may have stopped
                // and `resets` may already count this reset.
                return _lifecycle.RequestReset("reset through the control API", out int before) is { } notReset
                    ? Error(notReset) : Reply(w => { WriteState(w); w.WriteNumber("resetsBefore", before); });
            }
            case "reboot":
            {
                return _lifecycle.RequestReboot(out int before) is { } notRebooted
                    ? Error(notRebooted) : Reply(w => { WriteState(w); w.WriteNumber("resetsBefore", before); });
            }
            case "media":
                if (request.MediaAction != null && _configuration.ChangeMedium(request.Drive, request.MediaAction == "insert" ? request.MediumPath : null) is { } mediaRefused)
                    return Error(mediaRefused);
                return Reply(WriteDrives);
            case "help":
                return Reply(w =>
                {
                    w.WriteStartArray("commands");
                    foreach (var c in Commands) w.WriteStringValue(c);
                    w.WriteEndArray();
                });
            default:
                return Error($"unknown command '{request.Command}' (one of: {string.Join(", ", Commands)})");
        }
    }

    public static IReadOnlyList<string> Commands => ControlProtocol.Commands;

    /// <summary>"wait-running": the state reply once the BSP has entered the guest (Running, or Paused if it was paused
    /// since); an error once the VM is stopping or the engine ends first, or after <paramref name="timeoutMs"/>. Woken by
    /// the lifecycle's state changes, across rebuilds after a reset; nothing polls.</summary>
    private async Task<byte[]> WaitRunning(int timeoutMs)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(timeoutMs);
        while (true)
        {
            var changed = _lifecycle.Changed;   // before the state: a change after this read completes it
            var runner = _lifecycle.Current?.Runner;
            var started = runner?.StartedUtc ?? default;
            string state = StateOf(runner, started);
            // A VM paused while it was built is Paused before its BSP ever entered the guest: not run yet.
            if (state is "Running" || (state is "Paused" && started != default)) return Reply(WriteState);
            if (state == "Stopping")
                return Error($"the VM is stopping and will not run: {_lifecycle.End?.Reason ?? runner?.StopReason ?? "the engine is ending"}");
            try { await changed.WaitAsync(timeout.Token); }
            catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
            {
                return Error($"the VM is not running after {timeoutMs} ms (it is {state})");
            }
        }
    }

    /// <summary>The socket is served before the runner starts the vCPUs, and stays while the machine is built again
    /// after a reset: until the BSP has entered the guest, StartedUtc is unset (default) and the VM is "Starting" (or
    /// "Paused", when paused meanwhile), with no uptime.</summary>
    private string StateOf(VmRunner? runner, DateTime started) =>
        _lifecycle.Ending ? "Stopping"
        : runner == null ? "Starting"
        : runner.StopRequested ? (_lifecycle.WillRestart(runner) ? "Starting" : "Stopping")
        : runner.Paused ? "Paused" : started == default ? "Starting" : "Running";

    private void WriteState(Utf8JsonWriter w)
    {
        var boot = _lifecycle.Current;
        var runner = boot?.Runner;
        var started = runner?.StartedUtc ?? default;   // read once, so state and uptime agree if the runner starts meanwhile
        w.WriteString("state", StateOf(runner, started));
        w.WriteString("name", Spec.Name);
        w.WriteString("uuid", EffectiveUuid.ToString());
        w.WriteNumber("pid", Environment.ProcessId);
        w.WriteNumber("vcpus", boot?.Machine.Vcpus.Count ?? Spec.Vcpus);
        w.WriteNumber("memoryBytes", Spec.MemoryBytes);
        if (started == default) w.WriteNull("startedUtc");
        else w.WriteString("startedUtc", started);
        w.WriteNumber("uptimeSeconds", started == default ? 0 : Math.Round(Math.Max(0, (DateTime.UtcNow - started).TotalSeconds), 3));
        w.WriteNumber("resets", _lifecycle.Resets);
    }

    private Guid EffectiveUuid => Spec.EffectiveUuid;

    private void WriteConfig(Utf8JsonWriter w)
    {
        w.WriteStartArray("arguments");
        foreach (var a in CommandLineFormatter.ToArguments(Spec with { Uuid = EffectiveUuid })) w.WriteStringValue(a);
        w.WriteEndArray();
    }

    private void WriteDrives(Utf8JsonWriter w)
    {
        w.WriteStartArray("drives");
        foreach (var drive in _configuration.Drives())
        {
            w.WriteStartObject();
            w.WriteString("drive", drive.Drive);
            if (drive.Medium == null) w.WriteNull("medium");
            else w.WriteString("medium", drive.Medium);
            w.WriteBoolean("locked", drive.Locked);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WriteCounters(Utf8JsonWriter w, EngineLifecycle.Boot boot)
    {
        w.WriteNumber("vcpus", boot.Machine.Vcpus.Count);
        w.WriteNumber("unknownMsrAccesses", boot.Runner.UnknownMsrAccesses);
        w.WriteStartArray("devices");
        foreach (var (device, counters) in MachineReport.DeviceCounters(boot.Machine))
        {
            w.WriteStartObject();
            w.WriteString("device", device);
            foreach (var (name, value) in counters) w.WriteNumber(name, value);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>"console [history]": after the reply line, the connection carries the first serial port's output
    /// (from now, or from what the ring still holds) and whatever the client sends becomes the guest's input. The
    /// session outlives a reset or reboot: when a boot ends and the engine goes on, it waits for the new machine and
    /// carries its port from that boot's first byte. It ends when the client leaves or the engine ends.</summary>
    private async Task StreamConsole(Socket client, bool history, ReadOnlyMemory<byte> pending)
    {
        var boot = await WaitForBoot();
        if (boot == null) { await Send(client, Error("the VM has no machine running (it is restarting or being turned off)")); return; }
        var port = Com1Of(boot);
        if (port == null) { await Send(client, Error("the VM has no serial port")); return; }
        long position = history ? 0 : port.Output.Position;
        await Send(client, Reply(w => w.WriteString("console", port.Name)));

        var output = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (true)
            {
                bool clientLeft;
                using (var done = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token, boot.Ended.Token))
                {
                    var input = PumpInput(client, port, pending, done.Token);
                    pending = default;
                    try
                    {
                        while (!input.IsCompleted)
                        {
                            var more = port.Output.WaitBeyondAsync(position, done.Token);
                            await Task.WhenAny(more, input);
                            if (!more.IsCompletedSuccessfully) break;
                            position = await Forward(client, port, position, output);
                        }
                        // The last words of an ended boot (its reset message, say) still reach the client.
                        if (boot.Ended.IsCancellationRequested)
                            for (long before = -1; before != position;) (before, position) = (position, await Forward(client, port, position, output));
                    }
                    finally
                    {
                        done.Cancel();
                        try { await input; } catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException) { }
                    }
                    // PumpInput ends uncancelled only when the client is gone (EOF, hang-up, a socket error); cancelled,
                    // the boot or the server ended.
                    clientLeft = !input.IsCanceled;
                }
                if (clientLeft || _stop.IsCancellationRequested || !boot.Ended.IsCancellationRequested || !_lifecycle.Restarting) return;
                // The engine builds the machine again: go on with the new one's port, whose output is all the new boot's.
                if (await WaitForBoot() is not { } next || Com1Of(next) is not { } nextPort) return;
                (boot, port, position) = (next, nextPort, 0);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    /// <summary>Sends what <paramref name="port"/> holds beyond <paramref name="position"/>; the position after it.</summary>
    private async Task<long> Forward(Socket client, SerialPort port, long position, byte[] output)
    {
        int n = port.Output.Read(position, output, out position, out _);
        // Not cancelled by the boot's end: a reset must not cut a send in half.
        if (n > 0) await client.SendAsync(output.AsMemory(0, n), SocketFlags.None, _stop.Token);
        return position;
    }

    private static SerialPort? Com1Of(EngineLifecycle.Boot boot) =>
        boot.Machine.SerialPorts.FirstOrDefault(p => p.Name == "com1") ?? boot.Machine.SerialPorts.FirstOrDefault();

    /// <summary>The current boot; while the machine is built again after a reset (a build takes moments), waits for the
    /// new one, up to <see cref="ConsoleWaitForBoot"/>. Null when none came or the engine is ending.</summary>
    private async Task<EngineLifecycle.Boot?> WaitForBoot()
    {
        var boot = _lifecycle.Current;
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); boot == null && !_lifecycle.Ending && waited.Elapsed < ConsoleWaitForBoot; boot = _lifecycle.Current)
            await Task.Delay(20, _stop.Token);
        return boot;
    }

    /// <summary>How long "console" waits for the machine to be built again after a reset.</summary>
    private static readonly TimeSpan ConsoleWaitForBoot = TimeSpan.FromSeconds(30);

    /// <summary>At most this much client input is taken off the socket before the guest has read it; the rest waits
    /// in the socket, so a client typing faster than the guest reads is slowed to the guest's pace.</summary>
    private const int InputChunk = 256;
    /// <summary>How often input waiting for FIFO space is offered again: soon while the guest reads, backing off
    /// while it does not, so an idle session costs a few wake-ups a second and no thread.</summary>
    private const int FirstRetryMs = 5, LastRetryMs = 200;

    /// <summary>Client to guest, without holding a thread: ends when the client stops sending (EOF), when it hangs up
    /// while its input waits for a guest that does not read, or when <paramref name="cancel"/> fires.</summary>
    private static async Task PumpInput(Socket client, SerialPort port, ReadOnlyMemory<byte> pending, CancellationToken cancel)
    {
        if (!await Deliver(client, port, pending, cancel)) return;
        var keys = new byte[InputChunk];
        while (true)
        {
            int got = await client.ReceiveAsync(keys, SocketFlags.None, cancel);
            if (got == 0) return;
            if (!await Deliver(client, port, keys.AsMemory(0, got), cancel)) return;
        }
    }

    /// <summary>Offers <paramref name="data"/> to the guest until it has taken all of it (true), or the client has hung
    /// up (false): nothing is dropped while the client is there. A ValueTask: a keystroke the FIFO takes at once
    /// allocates nothing.</summary>
    private static async ValueTask<bool> Deliver(Socket client, SerialPort port, ReadOnlyMemory<byte> data, CancellationToken cancel)
    {
        int retryMs = FirstRetryMs;
        while (true)
        {
            // Once the boot has ended its machine is being disposed: its UART must not be touched (nor, through
            // the UART's interrupt line, a VM descriptor number the next machine may reuse).
            cancel.ThrowIfCancellationRequested();
            int taken = port.TryInject(data.Span);
            data = data[taken..];
            if (data.IsEmpty) return true;
            // Not reading the socket meanwhile, so its EOF is not seen: ask the kernel whether the client left.
            if (SocketPeer.HasHungUp(client.SafeHandle)) return false;
            retryMs = taken > 0 ? FirstRetryMs : Math.Min(retryMs * 2, LastRetryMs);
            await Task.Delay(retryMs, cancel);
        }
    }

    private static byte[] Reply(Action<Utf8JsonWriter> body) => Json(w =>
    {
        w.WriteBoolean("ok", true);
        body(w);
    });

    private static byte[] Error(string message) => Json(w =>
    {
        w.WriteBoolean("ok", false);
        w.WriteString("error", message);
    });

    // Messages quote names with ' and paths with /: keep them readable for socat and curl users.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private static Task Send(Socket client, byte[] reply) => client.SendAsync(reply.AsMemory(), SocketFlags.None).AsTask();

    private int _replying;

    public void Dispose()
    {
        // Waiters first: "wait-running" then answers that the engine ends before the socket closes under it.
        _lifecycle.Close("the engine is ending");
        SpinWait.SpinUntil(() => Volatile.Read(ref _replying) == 0, TimeSpan.FromSeconds(1));
        _stop.Cancel();
        _listener.Dispose();
        // Only the socket this engine bound: a path taken over since (a new engine's socket, a file) stays.
        if (_identity is { } id) OutputFiles.RemoveIfSame(_path, id);
    }

    private FileIdentity? _identity;
}
