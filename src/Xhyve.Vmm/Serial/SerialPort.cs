using Xhyve.Vmm.Devices.Legacy;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Serial;

/// <summary>
/// The host side of one UART: the backends its output goes to and a pump that delivers host input
/// into the UART's receive FIFO without ever dropping it (it waits for FIFO space).
/// </summary>
public sealed unsafe class SerialPort : ISerialOutput, IDisposable
{
    private readonly string _name;
    private readonly List<int> _outputs = new();
    private readonly List<int> _inputs = new();
    private readonly List<int> _owned = new();
    private readonly HashSet<int> _ptys = new();
    private readonly int[] _wakePipe = new int[2];
    private Thread? _pump;
    private volatile bool _stopping;
    private Uart16550? _uart;

    public string Name => _name;

    /// <summary>Where autopty backends were created, for the user.</summary>
    public IReadOnlyList<string> PtyNames => _ptyNames;
    private readonly List<string> _ptyNames = new();

    /// <param name="name">"com1", "com2" or "pci uart at ..." for messages.</param>
    /// <param name="backends">The backends; an empty list behaves as null.</param>
    public SerialPort(string name, IReadOnlyList<SerialBackendSpec> backends)
    {
        _name = name;
        try
        {
            foreach (var b in backends) Open(b);
        }
        catch { Dispose(); throw; }
    }

    /// <summary>What can be checked of <paramref name="backends"/> without opening or creating anything, so a bad
    /// path is refused before the engine writes any file (a later backend's refusal would otherwise leave an
    /// earlier log= file created). Throws <see cref="IOException"/>; <see cref="Open"/> checks again.</summary>
    public static void Check(string name, IReadOnlyList<SerialBackendSpec> backends)
    {
        foreach (var b in backends)
        {
            switch (b.Kind)
            {
                case SerialBackendKind.Log: OutputFiles.CheckAppendable(b.Path!, $"{name} log="); break;
                case SerialBackendKind.Tty: OutputFiles.CheckTerminalPath(b.Path!, name); break;
                case SerialBackendKind.AutoPty when b.Path != null: OutputFiles.CheckReplaceable(b.Path, $"{name} autopty="); break;
            }
        }
    }

    private void Open(SerialBackendSpec b)
    {
        switch (b.Kind)
        {
            case SerialBackendKind.Null: break;
            case SerialBackendKind.Stdio:
                TerminalGuard.MakeRaw(0);
                _inputs.Add(0);
                _outputs.Add(1);
                break;
            case SerialBackendKind.Log:
            {
                int fd = OutputFiles.OpenForAppend(b.Path!, $"{_name} log=");
                _owned.Add(fd);
                _outputs.Add(fd);
                break;
            }
            case SerialBackendKind.Tty:
            {
                int fd = OutputFiles.OpenTerminal(b.Path!, _name);
                _owned.Add(fd);
                TerminalGuard.MakeRaw(fd);
                _inputs.Add(fd);
                _outputs.Add(fd);
                break;
            }
            case SerialBackendKind.AutoPty:
            {
                int fd = LibC.PosixOpenPt(LibC.O_RDWR | LibC.O_NOCTTY | LibC.O_NONBLOCK | LibC.O_CLOEXEC);
                if (fd < 0) throw new IOException($"{_name}: cannot allocate a pty: {LibC.StrError(LibC.LastErrno)}");
                _owned.Add(fd);
                if (LibC.GrantPt(fd) != 0 || LibC.UnlockPt(fd) != 0)
                    throw new IOException($"{_name}: cannot unlock the pty: {LibC.StrError(LibC.LastErrno)}");
                byte* buf = stackalloc byte[128];
                if (LibC.PtsNameR(fd, buf, 128) != 0) throw new IOException($"{_name}: ptsname failed");
                string pts = new((sbyte*)buf);
                // Raw line discipline so guest bytes reach the reader unchanged.
                if (LibC.TcGetAttr(fd, out var t) == 0) { LibC.CfMakeRaw(ref t); LibC.TcSetAttr(fd, LibC.TCSANOW, t); }
                _ptyNames.Add(pts);
                if (b.Path != null)
                {
                    // Removed at exit (while it is still this file): a stale name would point a later reader at
                    // whatever pty the kernel hands out next.
                    _nameFiles.Add((b.Path, OutputFiles.WriteReplacing(b.Path, pts + "\n", $"{_name} autopty=")));
                }
                _inputs.Add(fd);
                _outputs.Add(fd);
                _ptys.Add(fd);
                break;
            }
        }
    }

    private readonly List<(string Path, FileIdentity Identity)> _nameFiles = new();

    /// <summary>Connects the UART and starts delivering host input to it.</summary>
    public void Attach(Uart16550 uart)
    {
        _uart = uart;
        uart.ReceiveSpaceAvailable += Wake;
        if (_inputs.Count == 0) return;
        fixed (int* p = _wakePipe)
            if (LibC.Pipe2(p, LibC.O_CLOEXEC | LibC.O_NONBLOCK) != 0) throw new IOException("pipe2 failed");
        _pump = new Thread(Pump) { IsBackground = true, Name = $"{_name} input" };
        _pump.Start();
    }

    private void Wake()
    {
        if (_wakePipe[1] == 0) return;
        byte b = 0;
        LibC.Write(_wakePipe[1], &b, 1);
    }

    private void Pump()
    {
        var uart = _uart!;
        int n = _inputs.Count + 1;
        PollFd* fds = stackalloc PollFd[n];
        byte* buffer = stackalloc byte[Uart16550.FifoSize];
        var closed = new bool[_inputs.Count];
        var idleUntil = new long[_inputs.Count];
        while (!_stopping)
        {
            int space = uart.ReceiveSpace;
            long now = Environment.TickCount64;
            fds[0] = new PollFd { Fd = _wakePipe[0], Events = PollFd.PollIn };
            for (int i = 0; i < _inputs.Count; i++)
            {
                bool watch = !closed[i] && space > 0 && now >= idleUntil[i];
                fds[i + 1] = new PollFd { Fd = watch ? _inputs[i] : -1, Events = PollFd.PollIn };
            }
            if (LibC.Poll(fds, (nuint)n, 200) < 0 && LibC.LastErrno != LibC.EINTR) return;
            if ((fds[0].Revents & PollFd.PollIn) != 0)
            {
                byte drain;
                while (LibC.Read(_wakePipe[0], &drain, 1) > 0) { }
            }
            for (int i = 0; i < _inputs.Count && !_stopping; i++)
            {
                if (fds[i + 1].Revents == 0) continue;
                space = uart.ReceiveSpace;
                if (space <= 0) break;
                nint got = LibC.Read(_inputs[i], buffer, (nuint)space);
                if (got > 0) { uart.Receive(new ReadOnlySpan<byte>(buffer, (int)got)); continue; }
                int errno = LibC.LastErrno;
                if (got < 0 && (errno == LibC.EAGAIN || errno == LibC.EINTR)) continue;
                // A pty master reads EIO/HUP while no one has the slave open: look again later, so
                // a terminal program can attach at any time. Anything else (stdin EOF) is final.
                if (_ptys.Contains(_inputs[i])) idleUntil[i] = Environment.TickCount64 + 200;
                else closed[i] = true;
            }
        }
    }

    /// <summary>Recent output, for the control API's console stream.</summary>
    public ConsoleBuffer Output { get; } = new();

    /// <summary>Gives the guest as much of <paramref name="data"/> as its receive FIFO takes now, as if typed on the
    /// port; how many bytes it took (0 before the UART is attached). Never waits: a caller that must deliver the
    /// rest offers it again later, so a guest that never reads holds no host thread.</summary>
    public int TryInject(ReadOnlySpan<byte> data) => _stopping ? 0 : _uart?.Receive(data) ?? 0;

    public void Write(byte value)
    {
        Output.Append(value);
        foreach (int fd in _outputs)
        {
            // Never block the vCPU on a slow reader: a full pty or pipe drops output, like a real line.
            LibC.Write(fd, &value, 1);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        Wake();
        _pump?.Join(2000);
        foreach (int fd in _owned) LibC.Close(fd);
        _owned.Clear();
        foreach (var (path, identity) in _nameFiles) OutputFiles.RemoveIfSame(path, identity);
        _nameFiles.Clear();
        foreach (int fd in _wakePipe) if (fd > 0) LibC.Close(fd);
    }
}
