using System.Management.Automation;
using System.Net.Sockets;
using System.Text;
using Xhyve.Vmm.Serial;

namespace Xhyve.PowerShell.Cmdlets;

/// <summary>Get-XhyveConsoleOutput: what the guest printed on its serial console (the VM's console log),
/// the last -Tail lines, and with -Wait everything that follows until Ctrl-C or the VM stops.</summary>
[Cmdlet(VerbsCommon.Get, "XhyveConsoleOutput", DefaultParameterSetName = "Name")]
[OutputType(typeof(string))]
public sealed class GetXhyveConsoleOutputCommand : XhyveVMActionCmdlet
{
    /// <summary>Only the last this many lines of the console log.</summary>
    [Parameter] [ValidateRange(1, int.MaxValue)]
    public int Tail { get; set; }

    /// <summary>Keep reading: write each new line as the guest prints it, until the VM is off or you press Ctrl-C.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    private volatile bool _stopping;

    protected override void StopProcessing() => _stopping = true;

    protected override void ProcessRecord()
    {
        foreach (var name in TargetNames)
        {
            Try(name, () =>
            {
                // -Tail reads back from the log's end; otherwise it is passed on a chunk at a time. Neither holds
                // the whole log in memory, however long the guest has been printing.
                long offset = 0;
                if (Tail > 0)
                {
                    var tail = Engines.ConsoleTail(name, Tail);
                    foreach (var line in tail.Lines) WriteObject(line);
                    offset = tail.End;
                }
                else
                {
                    while (Engines.ReadConsoleLines(name, offset) is { Lines.Count: > 0 } chunk)
                    {
                        foreach (var line in chunk.Lines) WriteObject(line);
                        offset = chunk.Next;
                    }
                    // A last line without its newline yet: shown now, as the guest left it.
                    var rest = Engines.ConsoleTail(name, 1);
                    if (rest.End > offset && rest.Lines.Count == 1) { WriteObject(rest.Lines[0]); offset = rest.End; }
                }
                if (!Wait) return;
                // Follow the log: complete lines as they arrive, until the VM is off and nothing more comes.
                while (!_stopping)
                {
                    var (lines, next) = Engines.ReadConsoleLines(name, offset);
                    if (lines.Count > 0)
                    {
                        foreach (var line in lines) WriteObject(line);
                        offset = next;
                    }
                    else if (Engines.GetStatus(name).State == Management.Engine.VmState.Off) break;
                    Thread.Sleep(100);
                }
            });
        }
    }
}

/// <summary>Connect-XhyveVM: the VM's serial console in this terminal, through the engine's control socket.
/// Ctrl-] detaches; the VM keeps running.</summary>
[Cmdlet(VerbsCommunications.Connect, "XhyveVM", DefaultParameterSetName = "Name")]
[OutputType(typeof(void))]
public sealed class ConnectXhyveVMCommand : XhyveVMActionCmdlet
{
    /// <summary>Show the output the engine still holds (up to 64 KiB) before the live console.</summary>
    [Parameter]
    public SwitchParameter History { get; set; }

    private const int StdIn = 0;
    private volatile bool _stopping;

    protected override void StopProcessing() => _stopping = true;

    /// <summary>Ends the console session; an engine that is gone already (the VM turned off) has ended it.</summary>
    private static void Hangup(Socket socket)
    {
        try { socket.Shutdown(SocketShutdown.Both); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    private static ErrorRecord NoTerminal(string name) =>
        new(new InvalidOperationException($"Connect-XhyveVM needs an interactive terminal, and this session's input is not one (it is redirected); use Get-XhyveConsoleOutput {name} -Wait to follow the console without one."),
            "NoTerminal", ErrorCategory.InvalidOperation, name);

    protected override void ProcessRecord()
    {
        var names = TargetNames.ToList();
        if (names.Count != 1)
        {
            WriteError(new ErrorRecord(new ArgumentException($"Connect-XhyveVM attaches to one VM; {names.Count} matched."), "OneVMOnly", ErrorCategory.InvalidArgument, Name));
            return;
        }
        string name = names[0];
        // It reads what is typed straight from the terminal (raw mode): a pipe, a file or /dev/null will not do.
        if (!RawTerminal.IsTerminal(StdIn))
        {
            WriteError(NoTerminal(name));
            return;
        }
        Try(name, () =>
        {
            using var client = Engines.Connect(name);
            var socket = client.OpenConsole(History);
            Host.UI.WriteLine($"Connected to {name}'s console. Press Ctrl-] to detach.");
            var output = new Thread(() =>
            {
                var buffer = new byte[4096];
                var decoder = Encoding.UTF8.GetDecoder();
                var chars = new char[4096];
                try
                {
                    int n;
                    while ((n = socket.Receive(buffer)) > 0)
                    {
                        int c = decoder.GetChars(buffer, 0, n, chars, 0);
                        Console.Out.Write(chars, 0, c);
                        Console.Out.Flush();
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            }) { IsBackground = true };
            output.Start();
            // Raw mode: each byte as typed, Ctrl-C included (it goes to the guest, as on a serial line).
            var terminal = RawTerminal.Open(StdIn);
            if (terminal == null)
            {
                Hangup(socket);
                WriteError(NoTerminal(name));
                return;
            }
            try
            {
                // One reader of the terminal, polling so that a VM turning off (the output thread ends) is noticed.
                ConsoleKeys.Pump(buffer => terminal.Read(buffer, 100), (bytes, count) => socket.Send(bytes, 0, count, SocketFlags.None),
                    () => output.IsAlive && !_stopping);
            }
            catch (SocketException) { }   // the engine went away mid-send: the VM is off, so this is the end as well
            finally
            {
                terminal.Dispose();
                Hangup(socket);
            }
            Host.UI.WriteLine();
            Host.UI.WriteLine($"Detached from {name}.");
        });
    }
}
