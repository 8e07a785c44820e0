using Xhyve.Vmm.Devices.Flash;

namespace Xhyve.Vmm.Tests.Devices.Flash;

/// <summary>The CFI flash of the UEFI variable store, driven as OVMF drives it, over a fake window that records the
/// mapping calls and serves reads from the image while mapped (what KVM's read-only slot does).</summary>
public sealed class CfiFlashTests : IDisposable
{
    private sealed class FakeWindow : IFlashWindow
    {
        public List<string> Calls { get; } = new();
        public bool Mapped { get; private set; }
        public void MapArray() { Assert.False(Mapped, "MapArray while mapped"); Mapped = true; Calls.Add("map"); }
        public void UnmapArray() { Assert.True(Mapped, "UnmapArray while unmapped"); Mapped = false; Calls.Add("unmap"); }
    }

    private const int Size = 16 * CfiFlash.BlockSize;
    private readonly string _dir = Directory.CreateTempSubdirectory("cfiflash").FullName;
    private readonly string _path;
    private readonly FlashImage _image;
    private readonly FakeWindow _window = new();
    private readonly CfiFlash _flash;

    public CfiFlashTests()
    {
        _path = Path.Combine(_dir, "vars.fd");
        var content = new byte[Size];
        for (int i = 0; i < Size; i++) content[i] = (byte)(i * 7 + 3);
        File.WriteAllBytes(_path, content);
        _image = FlashImage.Open(_path);
        _flash = new CfiFlash(_image, _window);
    }

    public void Dispose()
    {
        _image.Dispose();
        Directory.Delete(_dir, true);
    }

    /// <summary>The file's bytes as another program sees them while the store is open: read through open(2), since .NET's
    /// own readers take a shared flock that the store's exclusive one refuses.</summary>
    internal static byte[] FileBytes(string path)
    {
        int fd = Vmm.Native.LibC.Open(path, Vmm.Native.LibC.O_RDONLY);
        Assert.True(fd >= 0, $"open {path}");
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true);
        var bytes = new byte[RandomAccess.GetLength(handle)];
        Assert.Equal(bytes.Length, RandomAccess.Read(handle, bytes, 0));
        return bytes;
    }

    /// <summary>A guest byte read: from the mapping while mapped, else an MMIO exit to the device.</summary>
    private byte GuestRead(ulong offset)
    {
        if (_window.Mapped) return _image.Bytes[(int)offset];
        Span<byte> b = stackalloc byte[1];
        _flash.Read(offset, b);
        return b[0];
    }

    /// <summary>A guest byte write: always an exit (the slot is read-only, or absent).</summary>
    private void GuestWrite(ulong offset, byte value) => _flash.Write(offset, [value]);

    [Fact]
    public void OvmfDetectionSequence_FindsAFlash()
    {
        // QemuFlashDetected: original byte; 0x50 then read (a RAM would echo 0x50); 0x70 then read: 0x00 means flash.
        const ulong at = 0x123;
        byte original = GuestRead(at);
        GuestWrite(at, CfiFlash.ClearStatusCommand);
        byte afterClear = GuestRead(at);
        Assert.Equal(original, afterClear);
        Assert.NotEqual(CfiFlash.ClearStatusCommand, afterClear);
        GuestWrite(at, CfiFlash.ReadStatusCommand);
        Assert.Equal(0x00, GuestRead(at));   // CLEARED_ARRAY_STATUS: "FD behaves as FLASH"
        GuestWrite(at, CfiFlash.ReadArrayCommand);
        Assert.Equal(original, GuestRead(at));
        Assert.Equal(["map", "unmap", "map"], _window.Calls);
    }

    [Fact]
    public void Program_OnlyClearsBits_ReportsReady_AndPersistsToTheFile()
    {
        const ulong at = 0x2001;
        byte old = _image.Bytes[(int)at];
        GuestWrite(at, CfiFlash.ProgramCommand);
        GuestWrite(at, 0x5A);
        Assert.False(_window.Mapped);   // status mode after a program
        Assert.Equal(CfiFlash.StatusReady, GuestRead(at) & CfiFlash.StatusReady);
        GuestWrite(at, CfiFlash.ReadArrayCommand);
        byte expected = (byte)(old & 0x5A);
        Assert.Equal(expected, GuestRead(at));
        Assert.Equal(expected, FileBytes(_path)[at]);
        // The alternate program command works the same; programming 0xFF changes nothing.
        GuestWrite(at, CfiFlash.ProgramAlternateCommand);
        GuestWrite(at, 0xFF);
        GuestWrite(at, CfiFlash.ReadArrayCommand);
        Assert.Equal(expected, GuestRead(at));
    }

    [Fact]
    public void OvmfWriteLoop_ProgramsEveryByte_WithOneUnmapAndOneMap()
    {
        // QemuFlashWrite: (0x10, data) per byte, then 0xFF at the last byte. Erase first so the data lands as given.
        const ulong block = 3 * CfiFlash.BlockSize;
        GuestWrite(block, CfiFlash.BlockEraseCommand);
        GuestWrite(block, CfiFlash.EraseConfirmCommand);
        GuestWrite(block, CfiFlash.ReadArrayCommand);
        byte[] data = "VARIABLE"u8.ToArray();
        _window.Calls.Clear();
        for (int i = 0; i < data.Length; i++)
        {
            GuestWrite(block + 0x40 + (ulong)i, CfiFlash.ProgramCommand);
            GuestWrite(block + 0x40 + (ulong)i, data[i]);
        }
        GuestWrite(block + 0x40 + (ulong)data.Length - 1, CfiFlash.ReadArrayCommand);
        Assert.Equal(data, _image.Bytes.Slice((int)block + 0x40, data.Length).ToArray());
        Assert.Equal(data, FileBytes(_path).AsSpan((int)block + 0x40, data.Length).ToArray());
        Assert.Equal(["unmap", "map"], _window.Calls);
    }

    [Fact]
    public void BlockErase_SetsTheWholeBlockToOnes_AndNothingElse_AndPersists()
    {
        byte before = _image.Bytes[2 * CfiFlash.BlockSize - 1], after = _image.Bytes[3 * CfiFlash.BlockSize];
        ulong inside = 2 * CfiFlash.BlockSize + 0x777;   // any address in the block selects it
        GuestWrite(inside, CfiFlash.BlockEraseCommand);
        GuestWrite(inside, CfiFlash.EraseConfirmCommand);
        Assert.Equal(CfiFlash.StatusReady, GuestRead(inside));
        GuestWrite(inside, CfiFlash.ReadArrayCommand);
        var file = FileBytes(_path);
        Assert.All(file.AsSpan(2 * CfiFlash.BlockSize, CfiFlash.BlockSize).ToArray(), b => Assert.Equal(0xFF, b));
        Assert.Equal(before, file[2 * CfiFlash.BlockSize - 1]);
        Assert.Equal(after, file[3 * CfiFlash.BlockSize]);
        Assert.Equal(0xFF, GuestRead(inside));
    }

    [Fact]
    public void EraseWithoutConfirm_IsASequenceError_AndErasesNothing()
    {
        byte[] before = FileBytes(_path);
        GuestWrite(0x100, CfiFlash.BlockEraseCommand);
        GuestWrite(0x100, 0x00);
        Assert.Equal(CfiFlash.StatusReady | CfiFlash.StatusEraseError | CfiFlash.StatusProgramError, GuestRead(0x100));
        Assert.Equal(before, FileBytes(_path));
        GuestWrite(0x100, CfiFlash.ClearStatusCommand);
        GuestWrite(0x100, CfiFlash.ReadStatusCommand);
        Assert.Equal(0, GuestRead(0x100));
    }

    [Fact]
    public void ProgrammedVariables_AreThereWhenTheStoreIsOpenedAgain()
    {
        GuestWrite(0x10, CfiFlash.ProgramCommand);
        GuestWrite(0x10, 0x00);
        GuestWrite(0x10, CfiFlash.ReadArrayCommand);
        _image.Dispose();   // the VM ends; the next one opens the store
        using var again = FlashImage.Open(_path);
        Assert.Equal(0x00, again.Bytes[0x10]);
    }

    [Fact]
    public void QueryMode_AnswersTheCfiStructure_AndReadIdentifierTheIds()
    {
        GuestWrite(0x55, CfiFlash.QueryCommand);
        Assert.False(_window.Mapped);
        Assert.Equal("QRY"u8.ToArray(), new[] { GuestRead(0x10), GuestRead(0x11), GuestRead(0x12) });
        Assert.Equal(0x01, GuestRead(0x13));                                   // Intel/Sharp command set
        Assert.Equal(16, GuestRead(0x27));                                    // 2^16 bytes = 64 KiB
        Assert.Equal(15, GuestRead(0x2D) | GuestRead(0x2E) << 8);               // 16 blocks
        Assert.Equal(CfiFlash.BlockSize, (GuestRead(0x2F) | GuestRead(0x30) << 8) * 256);
        GuestWrite(0, CfiFlash.ReadIdentifierCommand);
        Assert.Equal(CfiFlash.ManufacturerId, GuestRead(0));
        Assert.Equal(CfiFlash.DeviceId, GuestRead(1));
        GuestWrite(0, CfiFlash.ReadArrayCommand);
        Assert.True(_window.Mapped);
    }

    [Fact]
    public void HostileAccesses_AreDropped_WithoutThrowingOrChangingTheFile()
    {
        byte[] before = FileBytes(_path);
        Span<byte> wide = stackalloc byte[8];
        _flash.Read(Size, wide);
        Assert.Equal(0xFF, wide[0]);
        _flash.Read(ulong.MaxValue, wide);
        _flash.Read(Size - 4, wide);                                  // straddles the end
        _flash.Read(0, Span<byte>.Empty);
        GuestWrite(0, 0xE8);                                          // write-to-buffer: not implemented, back to read-array
        Assert.True(_window.Mapped);
        GuestWrite(Size - 1, CfiFlash.ProgramCommand);
        _flash.Write(Size - 1, [0, 0, 0, 0]);                           // program data past the end: dropped
        _flash.Write(ulong.MaxValue - 1, [0, 0]);
        _flash.Write(0, ReadOnlySpan<byte>.Empty);
        _flash.Write(0, new byte[16]);                                 // wider than any CPU access
        Assert.Equal(before, FileBytes(_path));
        Assert.True(_flash.Counters.DroppedAccesses >= 8);
        Assert.Equal(1, _flash.Counters.UnknownCommands);
    }

    [Fact]
    public void Reset_ReturnsToReadArrayMode_AndMapsTheWindow()
    {
        GuestWrite(0, CfiFlash.ReadStatusCommand);
        Assert.False(_window.Mapped);
        _flash.Reset();
        Assert.True(_window.Mapped);
        Assert.True(_flash.ArrayMapped);
    }

    [Fact]
    public void ReadArrayReads_ThatReachTheDevice_AreServedFromTheImage()
    {
        Span<byte> four = stackalloc byte[4];
        _flash.Read(0x100, four);
        Assert.Equal(_image.Bytes.Slice(0x100, 4).ToArray(), four.ToArray());
    }

    [Theory]
    [InlineData(0x0037_C000UL, 0x0008_4000UL, 0xFFC0_0000UL)]   // Debian's OVMF_CODE_4M.fd + OVMF_VARS_4M.fd: 4 MiB
    [InlineData(0x001E_0000UL, 0x0002_0000UL, 0xFFE0_0000UL)]   // OVMF_CODE.fd + OVMF_VARS.fd: 2 MiB
    public void WindowAddress_PutsTheStoreJustBelowTheRom(ulong code, ulong vars, ulong expected) =>
        Assert.Equal(expected, CfiFlash.WindowAddress(code, vars));
}

public sealed class FlashImageTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    public void AFileThatIsNotWholePages_IsRefusedNamingIt(int length)
    {
        string dir = Directory.CreateTempSubdirectory("flashimage").FullName;
        try
        {
            string path = Path.Combine(dir, "vars.fd");
            File.WriteAllBytes(path, new byte[length]);
            var e = Assert.Throws<IOException>(() => FlashImage.Open(path));
            Assert.Contains(path, e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Each engine keeps its own copy of the store in memory and writes its changes back: a second opener
    /// (another VM given the same file) is refused instead of the two overwriting each other.</summary>
    [Fact]
    public void AStoreInUseByAnotherVm_IsRefusedNamingIt()
    {
        string dir = Directory.CreateTempSubdirectory("flashimage").FullName;
        try
        {
            string path = Path.Combine(dir, "vars.fd");
            File.WriteAllBytes(path, new byte[8192]);
            using (FlashImage.Open(path))
                Assert.Contains(path, Assert.Throws<IOException>(() => FlashImage.Open(path)).Message);
            using (FlashImage.Open(path)) { }   // free again once the first is closed
        }
        finally { Directory.Delete(dir, true); }
    }
}
