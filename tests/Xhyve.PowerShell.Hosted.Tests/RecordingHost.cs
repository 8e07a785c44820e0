using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace Xhyve.PowerShell.Hosted.Tests;

/// <summary>A PowerShell host for the tests: it records what the cmdlets write to the host (the "What if:" lines of
/// -WhatIf go there, not to a stream) and answers confirmation prompts from a queue the test fills. It never waits for
/// input: a prompt the test did not expect is refused as `pwsh -NonInteractive` refuses it (PSInvalidOperationException,
/// which PowerShell turns into an error: MissingMandatoryParameter for a missing mandatory parameter).</summary>
internal sealed class RecordingHost : PSHost
{
    private readonly RecordingUI _ui = new();

    public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
    public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
    public override Guid InstanceId { get; } = Guid.NewGuid();
    public override string Name => "XhyveTestHost";
    public override PSHostUserInterface UI => _ui;
    public override Version Version => new(1, 0);

    /// <summary>The lines written through the host since the last <see cref="Reset"/>.</summary>
    public IReadOnlyList<string> Lines => _ui.Lines;

    /// <summary>The confirmation prompts shown since the last <see cref="Reset"/>: caption and message.</summary>
    public IReadOnlyList<string> Prompts => _ui.Prompts;

    /// <summary>Queues the answer to the next confirmation prompt, by its label without the '&amp;' ("Yes", "No", ...).</summary>
    public void Answer(string label) => _ui.Answers.Enqueue(label);

    /// <summary>Forgets the lines and prompts of the last invocation; queued answers stay for the next one.</summary>
    public void Reset()
    {
        _ui.Lines.Clear();
        _ui.Prompts.Clear();
    }

    /// <summary>Drops the answers no prompt took, returning how many there were (so they cannot leak into another test).</summary>
    public int DropUnusedAnswers()
    {
        int n = _ui.Answers.Count;
        _ui.Answers.Clear();
        return n;
    }

    public override void EnterNestedPrompt() => throw new NotSupportedException();
    public override void ExitNestedPrompt() => throw new NotSupportedException();
    public override void NotifyBeginApplication() { }
    public override void NotifyEndApplication() { }
    public override void SetShouldExit(int exitCode) { }

    private sealed class RecordingUI : PSHostUserInterface
    {
        private readonly System.Text.StringBuilder _partial = new();
        public readonly List<string> Lines = [];
        public readonly List<string> Prompts = [];
        public readonly Queue<string> Answers = new();

        public override PSHostRawUserInterface? RawUI => null;

        public override int PromptForChoice(string caption, string message, System.Collections.ObjectModel.Collection<ChoiceDescription> choices, int defaultChoice)
        {
            Prompts.Add($"{caption}: {message}");
            if (Answers.Count == 0)
                throw new PSInvalidOperationException($"unexpected prompt (the test queued no answer): {caption}: {message}");
            string label = Answers.Dequeue();
            for (int i = 0; i < choices.Count; i++)
                if (choices[i].Label.Replace("&", "", StringComparison.Ordinal) == label) return i;
            throw new PSInvalidOperationException($"the prompt '{caption}' has no choice '{label}'");
        }

        // Missing mandatory parameters: refused, as a non-interactive pwsh does, so the binder reports them.
        public override Dictionary<string, PSObject> Prompt(string caption, string message, System.Collections.ObjectModel.Collection<FieldDescription> descriptions)
        {
            Prompts.Add($"{caption}: {string.Join(", ", descriptions.Select(d => d.Name))}");
            throw new PSInvalidOperationException("the test host is non-interactive");
        }
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new PSInvalidOperationException("the test host is non-interactive");
        public override SecureString ReadLineAsSecureString() => throw new PSInvalidOperationException("the test host is non-interactive");

        public override void Write(string value) => _partial.Append(value);
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => _partial.Append(value);
        public override void WriteLine(string value)
        {
            Lines.Add(_partial + value);
            _partial.Clear();
        }
        public override void WriteDebugLine(string message) => Lines.Add("DEBUG: " + message);
        public override void WriteErrorLine(string value) => Lines.Add("ERROR: " + value);
        public override void WriteVerboseLine(string message) => Lines.Add("VERBOSE: " + message);
        public override void WriteWarningLine(string message) => Lines.Add("WARNING: " + message);
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
    }
}
