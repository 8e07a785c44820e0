using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Xhyve.Engine.Tests.Support;

/// <summary>One connection: send lines, read one JSON line per command, or read a console stream up to a marker.
/// What a read took off the socket beyond what it returned is kept for the next read, so a marker split across two
/// receives, or already received by an earlier read, is still found.</summary>
public sealed class ControlTestClient : IDisposable
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(20);
    private readonly System.Net.Sockets.Socket _s = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly Decoder _utf8 = Encoding.UTF8.GetDecoder();
    private readonly StringBuilder _unread = new();
    private readonly byte[] _buffer = new byte[4096];
    private readonly char[] _chars = new char[Encoding.UTF8.GetMaxCharCount(4096)];

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
        Send(command + "\n");
        return JsonDocument.Parse(ReadLine()).RootElement;
    }

    /// <summary>The next line without its newline; at the end of the stream, what is left.</summary>
    public string ReadLine() => Take("\n", includeMarker: false);

    public string ReadLineAfter(string command) { Send(command + "\n"); return ReadLine(); }
    public void Send(string text) => _s.Send(Encoding.UTF8.GetBytes(text));

    /// <summary>The text up to and including <paramref name="marker"/>; at the end of the stream, what is left.
    /// Throws a TimeoutException naming the marker and what arrived when nothing comes for 20 s.</summary>
    public string ReadUntil(string marker) => Take(marker, includeMarker: true);

    private string Take(string marker, bool includeMarker)
    {
        _s.ReceiveTimeout = (int)ReadTimeout.TotalMilliseconds;
        int at;
        while ((at = _unread.ToString().IndexOf(marker, StringComparison.Ordinal)) < 0)
        {
            int n;
            try { n = _s.Receive(_buffer); }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
            {
                throw new TimeoutException($"'{marker.ReplaceLineEndings("\\n")}' did not arrive within {ReadTimeout.TotalSeconds} s; unread:\n{_unread}", e);
            }
            if (n == 0)
            {
                string rest = _unread.ToString();
                _unread.Clear();
                return rest;
            }
            int chars = _utf8.GetChars(_buffer, 0, n, _chars, 0);
            _unread.Append(_chars, 0, chars);
        }
        string text = _unread.ToString(0, includeMarker ? at + marker.Length : at);
        _unread.Remove(0, at + marker.Length);
        return text;
    }

    public void Dispose() => _s.Dispose();
}
