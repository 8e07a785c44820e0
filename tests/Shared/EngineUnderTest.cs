using System.Reflection;

namespace Xhyve.TestSupport;

/// <summary>The engine executable the tests start: the NativeAOT build that tests/EngineUnderTest.targets publishes into
/// out/engine after the test build (its path is compiled into this assembly), or $XHYVE_ENGINE to test another.</summary>
internal static class EngineUnderTest
{
    public const string BuildHint = "the test build publishes it (dotnet build tests/Xhyve.Engine.Tests -c Release), as does bash scripts/build-engine.sh";

    /// <summary>The engine's path; throws, saying how to build it, when it is not there (never falls back to the JIT
    /// apphost beside the tests, which is not what ships).</summary>
    public static string Path
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("XHYVE_ENGINE");
            string path = !string.IsNullOrEmpty(configured) ? configured : Built;
            if (!File.Exists(path))
                throw new FileNotFoundException(string.IsNullOrEmpty(configured)
                    ? $"the NativeAOT engine {path} does not exist: {BuildHint}"
                    : $"XHYVE_ENGINE names {path}, which does not exist", path);
            return path;
        }
    }

    /// <summary>Where the test build published the engine.</summary>
    public static string Built => typeof(EngineUnderTest).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .SingleOrDefault(a => a.Key == "XhyveEngine")?.Value
        ?? throw new InvalidOperationException("the test assembly names no engine (XhyveEngine metadata): it must import tests/EngineUnderTest.targets");
}
