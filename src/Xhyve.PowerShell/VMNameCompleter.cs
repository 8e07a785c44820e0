using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using Xhyve.Management.Store;

namespace Xhyve.PowerShell;

/// <summary>Tab completion of VM names from the store, matching what is typed in any case (VM names are case-insensitive).</summary>
public sealed class VMNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? "").Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        IReadOnlyList<string> names;
        try { names = VmStore.OpenDefault().Names(); }
        // Completion has nowhere to report a problem: an unusable store just offers nothing (the command then says why).
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or VmStoreException) { yield break; }
        foreach (var name in names.Where(pattern.IsMatch))
            yield return new CompletionResult(name.Contains(' ') ? $"'{name}'" : name, name, CompletionResultType.ParameterValue, name);
    }
}
