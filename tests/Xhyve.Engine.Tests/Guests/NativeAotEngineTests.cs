using System.Buffers.Binary;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>The engine the tests start is the one that ships: the NativeAOT executable (tests/EngineUnderTest.targets),
/// not the JIT apphost the engine's project reference leaves beside the tests.</summary>
public sealed class NativeAotEngineTests
{
    [Fact]
    public void EngineUnderTest_IsANativeAotElf_ThatRunsWithoutAManagedAssemblyBesideIt()
    {
        var run = EngineProcess.Run(["-v"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal($"xhyve: {Program.Version} (XhyvePS, KVM backend, NativeAOT)", run.Stdout.Trim());

        byte[] header = new byte[20];
        using (var f = File.OpenRead(EngineProcess.Executable)) f.ReadExactly(header);
        Assert.Equal("\x7f" + "ELF", System.Text.Encoding.Latin1.GetString(header, 0, 4));
        Assert.Equal(0x3E, BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(18)));   // e_machine: EM_X86_64
        // A framework-dependent apphost cannot start without these; the native engine is the one file.
        string dir = Path.GetDirectoryName(EngineProcess.Executable)!;
        foreach (var managed in (string[])["xhyve.dll", "xhyve.runtimeconfig.json", "xhyve.deps.json"])
            Assert.False(File.Exists(Path.Combine(dir, managed)), $"{managed} beside the engine under test ({dir})");
    }

    [Fact]
    public void JitBuild_SaysJit_SoTheVersionLineTellsTheBuildsApart()
    {
        // The apphost of the library build the tests reference: what -v says when the code is not NativeAOT.
        var run = EngineProcess.RunProgram(Path.Combine(AppContext.BaseDirectory, "xhyve"), ["-v"], 60);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal($"xhyve: {Program.Version} (XhyvePS, KVM backend, JIT)", run.Stdout.Trim());
    }
}
