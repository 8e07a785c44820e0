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

    /// <summary>One byte at a time, so nothing after the reply line (console output) is consumed.</summary>
    private string? ReadLine()
    {
        var line = new List<byte>(256);
        Span<byte> one = stackalloc byte[1];
        while (_socket.Receive(one) == 1)
        {
            if (one[0] == '\n') return Encoding.UTF8.GetString(line.ToArray());
            line.Add(one[0]);
        }
        return null;
    }

    public void Dispose() => _socket.Dispose();
}
