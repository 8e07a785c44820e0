using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xhyve.HelpBuilder;

namespace Xhyve.PowerShell.Tests;

/// <summary>docs/en-US (platyPS markdown) and the MAML built from it cover every cmdlet and parameter, and only those.</summary>
public sealed class HelpTests
{
    private static readonly string Assembly = Path.Combine(AppContext.BaseDirectory, "Xhyve.PowerShell.dll");
    private static readonly IReadOnlyList<CmdletInfo> Cmdlets = CmdletMetadata.Read(Assembly);
    private static string Docs => Path.Combine(CmdletMetadataTests.Root, "docs", "en-US");

    [Fact]
    public void EveryCmdletAndParameter_HasWrittenHelp_AndNothingElseDoes() =>
        Assert.Empty(HelpCheck.Problems(Cmdlets, Docs));

    [Fact]
    public void RegeneratingTheMarkdown_ChangesNothing()
    {
        var comments = new DocComments(Path.ChangeExtension(Assembly, ".xml"));
        foreach (var cmdlet in Cmdlets)
        {
            string file = Path.Combine(Docs, cmdlet.Name + ".md");
            Assert.True(File.ReadAllText(file) == MarkdownHelpWriter.Write(cmdlet, HelpDocument.Read(file), comments),
                $"{file} is not what Xhyve.HelpBuilder markdown writes; run it and commit the result");
        }
    }

    [Fact]
    public void TheCheck_FindsAMissingParameterSection_AndAnUnknownOne()
    {
        string copy = Directory.CreateTempSubdirectory("help").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(Docs)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            string start = Path.Combine(copy, "Start-XhyveVM.md");
            File.WriteAllText(start, File.ReadAllText(start).Replace("### -PassThru", "### -PassTrough"));
            var problems = HelpCheck.Problems(Cmdlets, copy);
            Assert.Contains(problems, p => p.EndsWith("no section for -PassThru", StringComparison.Ordinal));
            Assert.Contains(problems, p => p.Contains("-PassTrough is documented but the cmdlet has no such parameter"));
        }
        finally { Directory.Delete(copy, true); }
    }

    [Fact]
    public void Defaults_AreRead_FromThePropertyInitializers()
    {
        string Default(string cmdlet, string parameter) => Syntax.Parameters(Cmdlets.Single(c => c.Name == cmdlet)).Single(p => p.Name == parameter).DefaultValue;
        Assert.Equal("60", Default("Stop-XhyveVM", "TimeoutSec"));            // declared in the base class XhyveVMShutdownCmdlet
        Assert.Equal("256MB", Default("New-XhyveVM", "MemoryStartupBytes"));   // a const of another assembly, as ldc.i4 + conv.i8
        Assert.Equal("1", Default("New-XhyveVM", "ProcessorCount"));          // after it in the same constructor
        Assert.Equal("*", Default("Get-XhyveVM", "Name"));                    // an array of one string
        Assert.Equal("Network Adapter", Default("Add-XhyveNetworkAdapter", "Name"));
        Assert.Equal("None", Default("New-XhyveVM", "KernelPath"));           // = "" is no default worth showing
        Assert.Equal("None", Default("Add-XhyveDisk", "Options"));            // = [] neither
        Assert.Equal("False", Default("Stop-XhyveVM", "TurnOff"));
    }

    [Fact]
    public void AnEnumDefault_IsShownByItsMembersName_FromThisAssemblyOrOneBesideIt()
    {
        using var pe = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(Assembly));
        var enums = new EnumNames(System.Reflection.Metadata.PEReaderExtensions.GetMetadataReader(pe), Path.GetDirectoryName(Assembly));
        Assert.Equal("Off", Initializers.Show(enums, 1L, "Xhyve.PowerShell.Cmdlets.XhyveWaitFor"));
        Assert.Equal("Tap", Initializers.Show(enums, (long)Xhyve.Vmm.Config.NetBackendKind.Tap, "Xhyve.Vmm.Config.NetBackendKind"));   // in Xhyve.Vmm.dll
        Assert.Equal("7", Initializers.Show(enums, 7L, "Xhyve.PowerShell.Cmdlets.XhyveWaitFor"));   // no such member: the number
    }

    [Fact]
    public void TheCheck_FindsAKnownDefaultLeftNone_AndKeepsAWrittenOneTheCodeCannotShow()
    {
        var problems = ProblemsAfter(("Stop-XhyveVM.md", text => ReplaceDefault(text, "TimeoutSec", "60", "None")),
            ("Add-XhyveDisk.md", text => ReplaceDefault(text, "Slot", "The lowest free slot from 2", "Slot 7")));
        Assert.Contains(problems, p => p.Contains("-TimeoutSec's default value is 60 in the code, but the help says None"));
        Assert.DoesNotContain(problems, p => p.Contains("Add-XhyveDisk"));
        var add = Cmdlets.Single(c => c.Name == "Add-XhyveDisk");
        string file = Path.Combine(Docs, "Add-XhyveDisk.md");
        Assert.Contains("Default value: The lowest free slot from 2", MarkdownHelpWriter.Write(add, HelpDocument.Read(file), new DocComments(null)));
    }

    [Fact]
    public void AnEnumWithoutInitializer_MustHaveItsDefaultWritten_AndANewSectionIsSeededWithItsZeroMember()
    {
        // C# emits no initializer for "= XhyveWaitFor.Running" (0): the help must still say Running.
        var problems = ProblemsAfter(("Wait-XhyveVM.md", text => ReplaceDefault(text, "For", "Running", "None")));
        Assert.Contains(problems, p => p.Contains("Wait-XhyveVM.md: -For's default value is left None, but without an argument it is Running"));
        var wait = Cmdlets.Single(c => c.Name == "Wait-XhyveVM");
        var existing = HelpDocument.Read(Path.Combine(Docs, "Wait-XhyveVM.md"));
        existing.ParameterYaml.Remove("For");   // as for a parameter the help has no section for yet
        string written = MarkdownHelpWriter.Write(wait, existing, new DocComments(null));
        Assert.Matches(@"### -For\n(.*\n)*?Default value: Running\n", written);
    }

    [Fact]
    public void TheCheck_FindsAnExampleWithoutExplanation_AndMissingRelatedLinks()
    {
        var problems = ProblemsAfter(
            ("Suspend-XhyveVM.md", text => Regex.Replace(text, @"(?s)(### Example 1[^\n]*\n```powershell\n.*?\n```\n).*?(?=\n## PARAMETERS)", "$1")),
            ("Resume-XhyveVM.md", text => Regex.Replace(text, @"(?s)## RELATED LINKS.*", "## RELATED LINKS\n[Get-XhyveVX](Get-XhyveVX.md)\n")));
        Assert.Contains(problems, p => p.Contains("Suspend-XhyveVM.md: Example 1") && p.EndsWith("has no explanation after its code", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("Resume-XhyveVM.md: RELATED LINKS has no link to about_Xhyve"));
        Assert.Contains(problems, p => p.Contains("Resume-XhyveVM.md: RELATED LINKS names no other cmdlet"));
        Assert.Contains(problems, p => p.Contains("Resume-XhyveVM.md: RELATED LINKS names Get-XhyveVX, which is no cmdlet of the module"));
    }

    [Fact]
    public void TheCheck_FindsAMissingAboutTopic_AndAnEmptySection()
    {
        var missing = ProblemsAfter(("about_Xhyve.help.md", null));
        Assert.Contains(missing, p => p.EndsWith("about_Xhyve.help.md: missing (the module's about topic, which every cmdlet links to)", StringComparison.Ordinal));
        var empty = ProblemsAfter(("about_Xhyve.help.md", text => Regex.Replace(text, @"(?s)## Short description\n.*?(?=\n## )", "## Short description\n")));
        Assert.Contains(empty, p => p.EndsWith("no '## Short description' section with text", StringComparison.Ordinal));
    }

    [Fact]
    public void TheAboutTopic_BecomesTheTextGetHelpShows()
    {
        string text = AboutTopic.Read(Path.Combine(Docs, "about_Xhyve.help.md")).ToText();
        Assert.StartsWith("TOPIC\n    about_Xhyve\n\nSHORT DESCRIPTION\n    ", text);
        Assert.Contains("\nLONG DESCRIPTION\n", text);
        Assert.Contains("\nSEE ALSO\n", text);
        Assert.Contains("\n  The VM store\n\n    The store is the folder $env:XHYVE_HOME, or else", text);   // a subtopic, its prose, no backticks
        Assert.DoesNotContain("](", text);
        Assert.DoesNotContain("```", text);
    }

    /// <summary>The check's findings on a copy of docs/en-US with some files changed (a null change deletes the file).</summary>
    private static List<string> ProblemsAfter(params (string File, Func<string, string>? Change)[] changes)
    {
        string copy = Directory.CreateTempSubdirectory("help").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(Docs)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            foreach (var (file, change) in changes)
            {
                string path = Path.Combine(copy, file);
                string before = File.ReadAllText(path);
                if (change == null) { File.Delete(path); continue; }
                string after = change(before);
                Assert.NotEqual(before, after);   // the test's edit took, so what it finds is the check's doing
                File.WriteAllText(path, after);
            }
            return HelpCheck.Problems(Cmdlets, copy).ToList();
        }
        finally { Directory.Delete(copy, true); }
    }

    private static string ReplaceDefault(string text, string parameter, string from, string to) =>
        Regex.Replace(text, $@"(?s)(### -{parameter}\n.*?Default value: ){Regex.Escape(from)}\n", $"${{1}}{to}\n");

    [Fact]
    public void Maml_HasEveryCmdlet_WithItsParametersSyntaxAndExamples()
    {
        var maml = MamlWriter.Write(Cmdlets.Select(c => (c, HelpDocument.Read(Path.Combine(Docs, c.Name + ".md")))));
        XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10", mamlNs = "http://schemas.microsoft.com/maml/2004/10", dev = "http://schemas.microsoft.com/maml/dev/2004/10";
        var commands = maml.Root!.Elements(command + "command").ToList();
        Assert.Equal(Cmdlets.Select(c => c.Name), commands.Select(c => c.Element(command + "details")!.Element(command + "name")!.Value));
        foreach (var (cmdlet, element) in Cmdlets.Zip(commands))
        {
            var documented = element.Element(command + "parameters")!.Elements(command + "parameter").Select(p => p.Element(mamlNs + "name")!.Value).ToHashSet();
            var expected = cmdlet.ParameterNames.Concat(cmdlet.SupportsShouldProcess ? ["WhatIf", "Confirm"] : []).ToHashSet();
            Assert.True(expected.SetEquals(documented), cmdlet.Name);
            Assert.Equal(Syntax.SetNames(cmdlet).Count, element.Element(command + "syntax")!.Elements(command + "syntaxItem").Count());
            Assert.Contains(element.Element(command + "examples")!.Elements(command + "example"), e => e.Element(dev + "code")!.Value.Length > 0);
            Assert.NotEmpty(element.Element(command + "details")!.Element(mamlNs + "description")!.Value);
        }
    }
}
