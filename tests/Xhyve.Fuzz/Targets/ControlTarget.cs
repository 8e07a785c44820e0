using Xhyve.Engine.Control;

namespace Xhyve.Fuzz;

/// <summary>
/// The control API's wire format: the input arrives in chunks (size from its first byte) into the server's
/// line buffer; every complete line is parsed. A line is a known command or an error reply, never an exception.
/// </summary>
internal static class ControlTarget
{
    public static void Run(byte[] data)
    {
        if (data.Length == 0) return;
        int chunk = 1 + data[0];
        var stream = data.AsSpan(1);
        var buffer = new byte[ControlProtocol.MaxLine];
        int filled = 0;
        while (true)
        {
            while (ControlProtocol.TryTakeLine(buffer, ref filled, out string line))
            {
                if (filled < 0 || filled > buffer.Length) throw new FuzzBugException($"line buffer holds {filled} bytes");
                if (ControlProtocol.Parse(line) is not { } request) continue;
                if (request.Error == null && !ControlProtocol.Commands.Contains(request.History ? "console history" : request.Command))
                    throw new FuzzBugException($"'{line}' accepted as the unknown command '{request.Command}'");
            }
            if (filled == buffer.Length || stream.IsEmpty) return;   // the server replies "command too long" and closes
            int n = Math.Min(Math.Min(chunk, stream.Length), buffer.Length - filled);
            stream[..n].CopyTo(buffer.AsSpan(filled));
            stream = stream[n..];
            filled += n;
        }
    }
}
