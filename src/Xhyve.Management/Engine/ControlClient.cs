using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Xhyve.Management.Engine;

/// <summary>The engine could not be reached or refused a command; the message says which and why.</summary>
public sealed class EngineException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A connection to an engine's control API (docs/control-api.md): one command line out, one JSON line back.</summary>
public sealed class ControlClient : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly string _path;

    public ControlClient(string path, TimeSpan timeout)
    {
        _path = path;
        _socket.ReceiveTimeout = _socket.SendTimeout = (int)timeout.TotalMilliseconds;
        try { _socket.Connect(new UnixDomainSocketEndPoint(path)); }
        catch (SocketException e)
        {
            _socket.Dispose();
            throw new EngineException($"cannot connect to the engine's control socket {path}: {e.Message}", e);
        }
    }

    /// <summary>Sends <paramref name="command"/>; the reply object. A reply with "ok": false throws its error.</summary>
    public JsonElement Ask(string command)
    {
        try
        {
            _socket.Send(Encoding.UTF8.GetBytes(command + "\n"));
            string line = ReadLine() ?? throw new EngineException($"{_path}: the engine closed the connection without replying to '{command}'");
            var reply = JsonDocument.Parse(line).RootElement;
            if (!reply.TryGetProperty("ok", out var ok) || !ok.GetBoolean())
                throw new EngineException(reply.TryGetProperty("error", out var error) ? error.GetString() ?? "error" : $"'{command}' failed");
            return reply;
        }
        catch (Exception e) when (e is SocketException or JsonException)
        {
            throw new EngineException($"{_path}: '{command}': {e.Message}", e);
        }
    }

    /// <summary>"console [history]": after this the connection is the raw console, with no receive timeout
    /// (a guest may stay silent for as long as it likes; only replies have a deadline).</summary>
    public Socket OpenConsole(bool history)
    {
        Ask(history ? "console history" : "console");
        _socket.ReceiveTimeout = 0;
        return _socket;
    }

    /// <summary>The reply line: what is waiting is peeked at (MSG_PEEK) and only the bytes up to its newline are taken, so
    /// nothing after the reply (console output) is consumed, in a few system calls rather than one per byte.</summary>
    private string? ReadLine()
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1024);
        int length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    byte[] larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                int peeked = _socket.Receive(buffer.AsSpan(length), SocketFlags.Peek);
                if (peeked == 0) return null;
                int newline = buffer.AsSpan(length, peeked).IndexOf((byte)'\n');
                // Takes what was peeked (this connection has one reader, so it is all there), up to and with the newline.
                int taken = _socket.Receive(buffer.AsSpan(length, newline < 0 ? peeked : newline + 1));
                if (taken == 0) return null;
                length += taken;
                if (newline >= 0 && taken == newline + 1) return Encoding.UTF8.GetString(buffer, 0, length - 1);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    public void Dispose() => _socket.Dispose();
}
