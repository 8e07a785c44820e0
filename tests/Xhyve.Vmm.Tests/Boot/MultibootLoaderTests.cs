using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.Boot;

public sealed class MultibootLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mb").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private string Write(string name, byte[] data)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, data);
        return path;
    }

    private static uint U32(GuestMemory mem, ulong address)
    {
        var b = new byte[4];
        mem.ReadExactly(new GuestAddress(address), b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    private static string CString(GuestMemory mem, ulong address)
    {
        var sb = new StringBuilder();
        var b = new byte[1];
        for (ulong a = address; ; a++) { mem.ReadExactly(new GuestAddress(a), b); if (b[0] == 0) break; sb.Append((char)b[0]); }
        return sb.ToString();
    }

    [Fact]
    public void ElfKernel_GetsInfoBlock_WithMemoryMapCommandLineAndModules()
    {
        var kernel = Write("k.elf", ImageBuilder.Elf(false, 0x100000, new byte[64], prefix: ImageBuilder.MultibootHeader()));
        var module = Write("m.bin", "module-data"u8.ToArray());
        using var mem = new GuestMemory(X86Layout.RamRegions(64UL << 20));
        var loaded = new MultibootLoader(kernel, [new MultibootModule(module, "m arg")], "n=5 verbose").Load(mem);

        Assert.Equal(MultibootLoader.BootloaderMagic, (uint)loaded.EntryState.Rax);
        ulong info = loaded.EntryState.Rbx;
        uint flags = U32(mem, info);
        Assert.Equal(0x24Du, flags & 0x24D); // mem, cmdline, mods, mmap, loader name
        Assert.Equal(639u, U32(mem, info + 4));
        Assert.Equal((64u << 10) - 1024, U32(mem, info + 8));
        Assert.Equal("n=5 verbose", CString(mem, U32(mem, info + 16)));
        Assert.Equal(1u, U32(mem, info + 20));
        uint mods = U32(mem, info + 24);
        uint modStart = U32(mem, mods), modEnd = U32(mem, mods + 4);
        Assert.Equal(0u, modStart % 4096);
        Assert.True(modStart >= 0x100000 + 64);
        Assert.Equal(11u, modEnd - modStart);
        Assert.Equal("m arg", CString(mem, U32(mem, mods + 8)));
        uint mmapLength = U32(mem, info + 44), mmap = U32(mem, info + 48);
        var e820 = E820Map.Build(mem);
        Assert.Equal((uint)e820.Count * 24, mmapLength);
        for (int i = 0; i < e820.Count; i++)
        {
            var raw = new byte[24];
            mem.ReadExactly(new GuestAddress(mmap + (ulong)(24 * i)), raw);
            Assert.Equal(20u, BinaryPrimitives.ReadUInt32LittleEndian(raw));
            Assert.Equal(e820[i], new E820Entry(BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(4)),
                BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(12)), (E820Type)BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(20))));
        }
        Assert.Equal("xhyve", CString(mem, U32(mem, info + 64)));
    }

    [Fact]
    public void AoutKludge_LoadsAtLoadAddress_AndEntersAtEntryAddress()
    {
        var image = new byte[64];
        var header = ImageBuilder.MultibootHeader(flags: 0x0001_0003);
        var h = new byte[32];
        header.CopyTo(h, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), 0x200000);  // header_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), 0x200000);  // load_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), 0x200040);  // load_end_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), 0x200100);  // bss_end_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(28), 0x200020);  // entry_addr
        h.CopyTo(image, 0);
        image[0x20] = 0xF4;
        var kernel = Write("aout.bin", image);
        using var mem = new GuestMemory(X86Layout.RamRegions(16UL << 20));
        var loaded = new MultibootLoader(kernel, [], null).Load(mem);
        Assert.Equal(0x200020UL, loaded.EntryState.Rip);
        var b = new byte[1];
        mem.ReadExactly(new GuestAddress(0x200020), b);
        Assert.Equal(0xF4, b[0]);
    }

    [Fact]
    public void NoHeader_IsRefusedNamingTheFile()
    {
        var kernel = Write("plain.elf", ImageBuilder.Elf(false, 0x100000, new byte[64]));
        using var mem = new GuestMemory(X86Layout.RamRegions(16UL << 20));
        var e = Assert.Throws<BootImageException>(() => new MultibootLoader(kernel, [], null).Load(mem));
        Assert.Contains("plain.elf", e.Message);
        Assert.Contains("no multiboot header", e.Message);
    }

    [Fact]
    public void BadChecksum_IsNotAHeader()
    {
        var h = ImageBuilder.MultibootHeader();
        h[8] ^= 1;
        Assert.Equal(-1, MultibootLoader.FindHeader(h));
    }

    [Fact]
    public void UnsupportedRequiredFlag_IsRefused()
    {
        var kernel = Write("k.elf", ImageBuilder.Elf(false, 0x100000, new byte[64], prefix: ImageBuilder.MultibootHeader(flags: 0x10)));
        using var mem = new GuestMemory(X86Layout.RamRegions(16UL << 20));
        Assert.Throws<BootImageException>(() => new MultibootLoader(kernel, [], null).Load(mem));
    }

    [Fact]
    public void MissingModule_IsRefusedNamingIt()
    {
        var kernel = Write("k.elf", ImageBuilder.Elf(false, 0x100000, new byte[64], prefix: ImageBuilder.MultibootHeader()));
        using var mem = new GuestMemory(X86Layout.RamRegions(16UL << 20));
        var e = Assert.Throws<BootImageException>(() => new MultibootLoader(kernel, [new MultibootModule("/nonexistent/mod", null)], null).Load(mem));
        Assert.Contains("/nonexistent/mod", e.Message);
    }

    [Fact]
    public void ModuleLargerThanRam_IsRefused()
    {
        var kernel = Write("k.elf", ImageBuilder.Elf(false, 0x100000, new byte[64], prefix: ImageBuilder.MultibootHeader()));
        var big = Write("big.bin", new byte[3 << 20]);
        using var mem = new GuestMemory(X86Layout.RamRegions(4UL << 20));
        var e = Assert.Throws<BootImageException>(() => new MultibootLoader(kernel, [new MultibootModule(big, null)], null).Load(mem));
        Assert.Contains("big.bin", e.Message);
    }
}
