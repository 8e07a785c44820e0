using System.Text;
using Xhyve.Vmm.Config;

namespace Xhyve.Fuzz;

/// <summary>
/// The xhyve command line: the input split on NUL is argv. A bad command line is a CliException (one line
/// for the user). A spec that parses must validate without throwing; one that validates must format
/// (CommandLineFormatter) to arguments that parse again to the same arguments.
/// </summary>
internal static class CommandLineTarget
{
    public static void Run(byte[] data)
    {
        var args = Encoding.UTF8.GetString(data).Split('\0');
        CliResult result;
        try { result = CommandLineParser.Parse(args); }
        catch (CliException e) { Program.Expected(e); return; }
        if (result.Action != CliAction.Run) return;
        if (result.Spec.Validate() is { Count: > 0 } problems) { Program.Expected(new CliException(string.Join("; ", problems))); return; }
        var formatted = CommandLineFormatter.ToArguments(result.Spec);
        CliResult again;
        try { again = CommandLineParser.Parse(formatted); }
        catch (CliException e) { throw new FuzzBugException($"the formatted command line [{string.Join(" ", formatted)}] does not parse: {e.Message}"); }
        var reformatted = CommandLineFormatter.ToArguments(again.Spec);
        if (!formatted.SequenceEqual(reformatted))
            throw new FuzzBugException($"formatting is not stable: [{string.Join(" ", formatted)}] became [{string.Join(" ", reformatted)}]");
    }
}
