using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.FwCfg;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Tests.FwCfg;

/// <summary>The fw_cfg device's port and DMA semantics as QEMU's docs/specs/fw_cfg.rst defines them.</summary>
public sealed class FwCfgDeviceTests : IDisposable
{
    private const ulong RamSize = 1 << 20;
    private readonly GuestMemory _memory = new([new MemoryRegion(new GuestAddress(0), RamSize)]);
    private static readonly byte[] Blob = Enumerable.Range(0, 300).Select(i => (byte)(i * 7 + 1)).ToArray();

    public void Dispose() => _memory.Dispose();

    private FwCfgDevice Device(FwCfgItems? items = null) => new(items ?? new FwCfgItems()
        .Add(FwCfgSelectors.Signature, "QEMU"u8.ToArray())
        .AddU32(FwCfgSelectors.Id, 3)
        .AddFile("zeta", Blob)
        .AddFile("alpha", "first"u8.ToArray())
        .AddFile("etc/e820", new byte[40]), _memory);

    private static void Select(FwCfgDevice d, ushort selector)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, selector);
        d.Write(0, b);
    }

    private static byte[] ReadData(FwCfgDevice d, int count)
    {
        var result = new byte[count];
        for (int i = 0; i < count; i++) d.Read(1, result.AsSpan(i, 1));
        return result;
    }

    private static void StartDma(FwCfgDevice d, ulong descriptor)
    {
        Span<byte> half = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(half, (uint)(descriptor >> 32));
        d.Write(4, half);
        BinaryPrimitives.WriteUInt32BigEndian(half, (uint)descriptor);
        d.Write(8, half);
    }

    private void WriteDescriptor(ulong at, uint control, uint length, ulong address)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(b, control);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), length);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), address);
        _memory.WriteExactly(new GuestAddress(at), b);
    }

    private uint ControlAt(ulong at)
    {
        var b = new byte[4];
        _memory.ReadExactly(new GuestAddress(at), b);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    private byte[] Ram(ulong at, int length)
    {
        var b = new byte[length];
        _memory.ReadExactly(new GuestAddress(at), b);
        return b;
    }

    [Fact]
    public void DataPort_ReadsTheSelectedItemInOrder_AndSelectingAgainRewinds()
    {
        var d = Device();
        Select(d, FwCfgSelectors.Signature);
        Assert.Equal("QE"u8.ToArray(), ReadData(d, 2));
        Assert.Equal("MU"u8.ToArray(), ReadData(d, 2));
        Select(d, FwCfgSelectors.Signature);
        Assert.Equal("QEMU"u8.ToArray(), ReadData(d, 4));
        Select(d, FwCfgSelectors.Id);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(ReadData(d, 4)));
    }

    [Fact]
    public void DataPort_PastTheItemsEnd_ReadsZero()
    {
        var d = Device();
        Select(d, FwCfgSelectors.Signature);
        Assert.Equal("QEMU\0\0\0\0"u8.ToArray(), ReadData(d, 8));
    }

    [Theory]
    [InlineData((ushort)0x0006)]   // a numbered item nobody added
    [InlineData((ushort)0x0030)]   // past the last file
    [InlineData((ushort)0x8003)]   // an arch-local item (not served)
    [InlineData((ushort)0xFFFF)]
    public void UnknownSelector_ReadsZero(ushort selector)
    {
        var d = Device();
        Select(d, selector);
        Assert.All(ReadData(d, 16), b => Assert.Equal(0, b));
    }

    [Fact]
    public void WriteChannelBit_SelectsTheSameItem()
    {
        var d = Device();
        Select(d, FwCfgSelectors.Signature | FwCfgSelectors.WriteChannelBit);
        Assert.Equal("QEMU"u8.ToArray(), ReadData(d, 4));
    }

    [Fact]
    public void DmaAddressRegister_ReadsQemuCfg_MostSignificantByteFirst()
    {
        var d = Device();
        var all = new byte[8];
        d.Read(4, all);
        Assert.Equal("QEMU CFG", Encoding.ASCII.GetString(all));
        Assert.Equal(FwCfgSelectors.DmaSignature, BinaryPrimitives.ReadUInt64BigEndian(all));
        var low = new byte[4];
        d.Read(8, low);
        Assert.Equal(" CFG", Encoding.ASCII.GetString(low));
    }

    [Fact]
    public void DmaRead_WithSelect_CopiesTheItem_ZeroFillsPastItsEnd_AndClearsControl()
    {
        var d = Device();
        _memory.WriteExactly(new GuestAddress(0x2000), Enumerable.Repeat((byte)0xEE, 400).ToArray());
        ushort zeta = FwCfgSelectors.FirstFile + 2;   // after alpha and etc/e820
        WriteDescriptor(0x1000, ((uint)zeta << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaRead, 320, 0x2000);
        StartDma(d, 0x1000);
        Assert.Equal(0u, ControlAt(0x1000));
        Assert.Equal(Blob, Ram(0x2000, 300));
        Assert.All(Ram(0x2000 + 300, 20), b => Assert.Equal(0, b));
        Assert.Equal(0xEE, Ram(0x2000 + 320, 1)[0]);   // not one byte past the requested length
        Assert.Equal(0, d.DmaErrors);
    }

    [Fact]
    public void DmaSkip_AdvancesTheOffset_AndTheDataPortContinuesFromThere()
    {
        var d = Device();
        WriteDescriptor(0x1000, ((uint)(FwCfgSelectors.FirstFile + 2) << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaSkip, 100, 0);
        StartDma(d, 0x1000);
        Assert.Equal(0u, ControlAt(0x1000));
        WriteDescriptor(0x1000, FwCfgSelectors.DmaRead, 10, 0x3000);
        StartDma(d, 0x1000);
        Assert.Equal(Blob[100..110], Ram(0x3000, 10));
        Assert.Equal(Blob[110..115], ReadData(d, 5));
    }

    [Fact]
    public void DmaOne64BitWrite_StartsTheTransfer()
    {
        var d = Device();
        WriteDescriptor(0x1000, ((uint)FwCfgSelectors.Signature << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaRead, 4, 0x3000);
        var address = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(address, 0x1000);
        d.Write(4, address);
        Assert.Equal("QEMU"u8.ToArray(), Ram(0x3000, 4));
        Assert.Equal(1, d.DmaTransfers);
    }

    [Fact]
    public void DmaWrite_IsRefusedWithError_AndTheItemIsUnchanged()
    {
        var d = Device();
        _memory.WriteExactly(new GuestAddress(0x3000), "XXXX"u8);
        WriteDescriptor(0x1000, ((uint)FwCfgSelectors.Signature << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaWrite, 4, 0x3000);
        StartDma(d, 0x1000);
        Assert.Equal(FwCfgSelectors.DmaError, ControlAt(0x1000));
        Select(d, FwCfgSelectors.Signature);
        Assert.Equal("QEMU"u8.ToArray(), ReadData(d, 4));
    }

    [Theory]
    [InlineData(RamSize, 16u)]                  // wholly outside RAM
    [InlineData(RamSize - 8, 16u)]              // straddles the end of RAM
    [InlineData(0xFFFF_FFFF_FFFF_FFF0, 0x20u)]  // wraps around the address space
    [InlineData(0x1_0000_0000, 4u)]             // above 4 GiB, no RAM there
    [InlineData(0x10_0000 - 0x100, 0xFFFF_FFFFu)] // a 4 GiB length from inside RAM
    public void DmaRead_ToAHostileAddress_SetsError_AndWritesNothing(ulong address, uint length)
    {
        var d = Device();
        WriteDescriptor(0x1000, ((uint)(FwCfgSelectors.FirstFile + 2) << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaRead, length, address);
        var before = Ram(0, (int)RamSize);
        StartDma(d, 0x1000);
        Assert.Equal(FwCfgSelectors.DmaError, ControlAt(0x1000));
        var after = Ram(0, (int)RamSize);
        BinaryPrimitives.WriteUInt32BigEndian(before.AsSpan(0x1000), FwCfgSelectors.DmaError);   // the only change: the status
        Assert.True(before.AsSpan().SequenceEqual(after), "guest RAM changed beyond the status word");
        Assert.Equal(1, d.DmaErrors);
    }

    [Theory]
    [InlineData(RamSize - 8)]
    [InlineData(0xFFFF_FFFF_FFFF_FFF8)]
    public void DmaDescriptorOutsideRam_IsCountedAndIgnored(ulong descriptor)
    {
        var d = Device();
        StartDma(d, descriptor);
        Assert.Equal(1, d.DmaErrors);
        Select(d, FwCfgSelectors.Signature);
        Assert.Equal("QEMU"u8.ToArray(), ReadData(d, 4));   // the device still works
    }

    [Fact]
    public void DmaHighHalf_ClearsAfterEachTransfer()
    {
        var d = Device();
        Span<byte> half = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(half, 0xFFFF_FFFF);
        d.Write(4, half);
        WriteDescriptor(0x1000, ((uint)FwCfgSelectors.Signature << 16) | FwCfgSelectors.DmaSelect | FwCfgSelectors.DmaRead, 4, 0x3000);
        BinaryPrimitives.WriteUInt32BigEndian(half, 0x1000);
        d.Write(8, half);    // 0xFFFFFFFF_00001000: outside RAM
        Assert.Equal(1, d.DmaErrors);
        d.Write(8, half);    // the high half is 0 again: 0x1000
        Assert.Equal("QEMU"u8.ToArray(), Ram(0x3000, 4));
    }

    [Fact]
    public void Directory_IsBigEndian_SortedByName_WithSelectorsFrom0x20()
    {
        var d = Device();
        Select(d, FwCfgSelectors.FileDirectory);
        var dir = ReadData(d, 4 + 3 * 64);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(dir));
        var entries = Enumerable.Range(0, 3).Select(i => dir.AsSpan(4 + i * 64, 64).ToArray()).Select(e => (
            Size: BinaryPrimitives.ReadUInt32BigEndian(e), Selector: BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(4)),
            Reserved: BinaryPrimitives.ReadUInt16BigEndian(e.AsSpan(6)), Name: Encoding.ASCII.GetString(e, 8, 56).TrimEnd('\0'))).ToArray();
        Assert.Equal(["alpha", "etc/e820", "zeta"], entries.Select(e => e.Name));
        Assert.Equal([5u, 40u, 300u], entries.Select(e => e.Size));
        Assert.Equal([(ushort)0x20, (ushort)0x21, (ushort)0x22], entries.Select(e => e.Selector));
        Assert.All(entries, e => Assert.Equal(0, e.Reserved));
        Select(d, entries[2].Selector);
        Assert.Equal(Blob[..8], ReadData(d, 8));
    }

    [Fact]
    public void BadFileNames_AreRefused()
    {
        var items = new FwCfgItems();
        Assert.Throws<ArgumentException>(() => items.AddFile(new string('a', 56), [1]));
        Assert.Throws<ArgumentException>(() => items.AddFile("", [1]));
        items.AddFile("x", [1]);
        Assert.Throws<ArgumentException>(() => items.AddFile("x", [2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => items.Add(FwCfgSelectors.FileDirectory, [1]));
    }

    [Fact]
    public void DataPortReads_DoNotAllocate()
    {
        var d = Device();
        Select(d, (ushort)(FwCfgSelectors.FirstFile + 2));
        Span<byte> one = stackalloc byte[1];
        d.Read(1, one);   // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) { d.Read(1, one); if (i % 300 == 0) Select(d, (ushort)(FwCfgSelectors.FirstFile + 2)); }
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void OddAccesses_AreIgnored_NotThrown()
    {
        var d = Device();
        d.Write(0, [1]);            // a byte write to the selector
        d.Write(2, [1, 2, 3, 4]);
        d.Write(4, [1, 2]);
        d.Write(9, [1, 2, 3, 4]);
        var b = new byte[4];
        d.Read(2, b);
        Assert.Equal(4, d.IgnoredAccesses);
        Assert.Equal(0, d.DmaTransfers);
    }
}
