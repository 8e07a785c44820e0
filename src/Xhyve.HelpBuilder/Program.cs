using Xhyve.HelpBuilder;

// xhyve-help markdown ASSEMBLY DOCS_DIR   create or update DOCS_DIR/<Cmdlet>.md (prose kept; syntax and yaml regenerated)
// xhyve-help maml ASSEMBLY DOCS_DIR OUT   write the MAML help file OUT from the markdown, and beside it
//                                         about_*.help.txt from DOCS_DIR/about_*.help.md (Get-Help about_Xhyve)
if (args.Length < 3 || args[0] is not ("markdown" or "maml") || (args[0] == "maml" && args.Length < 4))
{
    Console.Error.WriteLine("usage: Xhyve.HelpBuilder markdown ASSEMBLY DOCS_DIR | maml ASSEMBLY DOCS_DIR OUT");
    return 2;
}
string assembly = args[1], docs = args[2];
if (!File.Exists(assembly)) { Console.Error.WriteLine($"{assembly}: no such assembly"); return 1; }
var cmdlets = CmdletMetadata.Read(assembly);
try
{
    if (args[0] == "markdown")
    {
        Directory.CreateDirectory(docs);
        var comments = new DocComments(Path.ChangeExtension(assembly, ".xml"));
        foreach (var cmdlet in cmdlets)
        {
            string file = Path.Combine(docs, cmdlet.Name + ".md");
            var existing = File.Exists(file) ? HelpDocument.Read(file) : null;
            File.WriteAllText(file, MarkdownHelpWriter.Write(cmdlet, existing, comments));
        }
        foreach (var stale in Directory.GetFiles(docs, "*.md").Where(f => !AboutTopic.IsAboutFile(f) && !cmdlets.Any(c => c.Name == Path.GetFileNameWithoutExtension(f))))
            Console.Error.WriteLine($"{stale}: no cmdlet of that name in {assembly}");
        Console.WriteLine($"{cmdlets.Count} help files in {docs}");
        return 0;
    }
    var pairs = cmdlets.Select(c => (c, HelpDocument.Read(Path.Combine(docs, c.Name + ".md")))).ToList();
    var problems = HelpCheck.Problems(cmdlets, docs);
    foreach (var p in problems) Console.Error.WriteLine(p);
    if (problems.Count > 0) return 1;
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[3]))!);
    MamlWriter.Write(pairs).Save(args[3]);
    Console.WriteLine($"{args[3]}: help for {pairs.Count} cmdlets");
    foreach (var topic in AboutTopic.Files(docs))
    {
        // Get-Help finds about topics as about_<Topic>.help.txt in the module's culture folder, beside the MAML.
        string text = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(args[3]))!, Path.GetFileName(topic)[..^AboutTopic.Suffix.Length] + ".help.txt");
        File.WriteAllText(text, AboutTopic.Read(topic).ToText());
        Console.WriteLine($"{text}: from {topic}");
    }
    return 0;
}
catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
{
    Console.Error.WriteLine(e.Message);
    return 1;
}
