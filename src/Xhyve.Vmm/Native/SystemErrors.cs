using System.Text.RegularExpressions;

namespace Xhyve.Vmm.Native;

/// <summary>
/// Words for the .NET exceptions the engine may print. The engine is built with UseSystemResourceKeys (smaller,
/// trimmed), so a runtime message is a resource key such as "IO_PathNotFound_Path, /x" or "Arg_OverflowException"
/// instead of a sentence. Our own messages pass through; a resource key is replaced by what it means.
/// </summary>
public static partial class SystemErrors
{
    /// <summary>"KEY" or "KEY, arg, arg": how a message reads when the runtime has no resource strings.</summary>
    [GeneratedRegex(@"^[A-Z][A-Za-z0-9]*_[A-Za-z0-9_]+(,|$)")]
    private static partial Regex ResourceKey();

    public static bool IsResourceKey(string message) => ResourceKey().IsMatch(message);

    /// <summary>The exception's message, or, when it is a bare resource key, words for it: "no such file or directory",
    /// "permission denied", "a number is too large" and so on.</summary>
    public static string Describe(Exception e)
    {
        if (!IsResourceKey(e.Message)) return e.Message;
        return e switch
        {
            FileNotFoundException or DirectoryNotFoundException => "no such file or directory",
            UnauthorizedAccessException => "permission denied",
            PathTooLongException => "the path is too long",
            EndOfStreamException => "the file ends too early",
            OverflowException or ArithmeticException => "a size or count is too large for the engine",
            OutOfMemoryException => "not enough memory",
            // Unix I/O errors carry errno in HResult when the runtime had no better type for them.
            IOException when e.HResult is > 0 and < 4096 => LibC.StrError(e.HResult),
            IOException => "input/output error",
            ArgumentException => "invalid argument",
            _ => e.GetType().Name,
        };
    }

    /// <summary>"INPUT: words", for a message that must name what the user gave.</summary>
    public static string Describe(string input, Exception e)
    {
        string words = Describe(e);
        return words.StartsWith(input, StringComparison.Ordinal) ? words : $"{input}: {words}";
    }
}
