using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Xhyve.Engine.Tests.Support;

/// <summary>One connection: send lines, read one JSON line per command.</summary>
public sealed class ControlTestClient : IDisposable
{
    private readonly System.Net.Sockets.Socket _s = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    public ControlTestClient(string path)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try { _s.Connect(new UnixDomainSocketEndPoint(path)); return; }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(20)) { Thread.Sleep(20); }
        }
    }
    public JsonElement Ask(string command)
    {
        _s.Send(Encoding.UTF8.GetBytes(command + "\n"));
        return JsonDocument.Parse(ReadLine()).RootElement;
    }
    public string ReadLine()
    {
        var line = new List<byte>();
        var one = new byte[1];
        _s.ReceiveTimeout = 20_000;
        while (_s.Receive(one) == 1 && one[0] != '\n') line.Add(one[0]);
        return Encoding.UTF8.GetString(line.ToArray());
    }
    public string ReadLineAfter(string command) { Send(command + "\n"); return ReadLine(); }
    public void Send(string text) => _s.Send(Encoding.UTF8.GetBytes(text));
    public string ReadUntil(string marker)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        _s.ReceiveTimeout = 20_000;
        while (!text.ToString().Contains(marker))
        {
            int n = _s.Receive(buffer);
            if (n == 0) break;
            text.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return text.ToString();
    }
    public void Dispose() => _s.Dispose();
}
