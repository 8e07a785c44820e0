using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using static Xhyve.Vmm.Tests.Ahci.Atapi.Atapi;

namespace Xhyve.Vmm.Tests.Ahci.Atapi;

/// <summary>The ATA commands an ATAPI drive answers outside PACKET: identification, signature, reset, features.</summary>
public sealed class AtapiAtaCommandTests
{
    private static AtapiCdrom Drive() => new("ahci-cd 0:3:0 port 0", new TrackedMedium(40 * 2048));

    private static string AtaString(Span<byte> id, int word, int words)
    {
        var chars = new char[words * 2];
        for (int i = 0; i < words * 2; i++) chars[i] = (char)id[word * 2 + (i ^ 1)];
        return new string(chars);
    }

    [Fact]
    public void SignatureAndKind_AreAtapis()
    {
        using var d = Drive();
        Assert.Equal(0xEB140101u, d.Signature);
        Assert.True(d.IsAtapi);
    }

    [Fact]
    public void IdentifyPacketDevice_DescribesARemovableCdromWithDma()
    {
        using var d = Drive();
        using var b = new GuestBuffers(100, 412, 512);      // a longer PRDT than the 512 bytes: the rest stays untouched
        var c = d.Execute(new AtaCommand(0xA1, 0, 0, 0, 0, 0), default, b.List);
        Assert.False(c.IsError);
        Assert.Equal(512, c.TransferredBytes);
        Assert.True(b.Written() <= 512);
        byte[] id = b.Bytes[..512].ToArray();
        ushort W(int w) => BinaryPrimitives.ReadUInt16LittleEndian(id[(w * 2)..]);
        Assert.Equal(0x85C0, W(0));
        Assert.Equal(2, W(0) >> 14);                    // ATAPI
        Assert.Equal(5, (W(0) >> 8) & 0x1F);            // CD/DVD device type
        Assert.Equal(0, W(0) & 3);                      // 12-byte packets
        Assert.Equal("XHYVE DVD-ROM".PadRight(40), AtaString(id, 27, 20));
        Assert.Equal(d.Serial.PadRight(20), AtaString(id, 10, 10));
        Assert.Equal(20, d.Serial.Length);
        Assert.Equal(AtapiCdrom.Revision.PadRight(8), AtaString(id, 23, 4));
        Assert.NotEqual(0, W(49) & 0x0100);              // DMA
        Assert.NotEqual(0, W(53) & 0x0004);              // word 88 valid
        Assert.Equal(0x7F, W(88) & 0x7F);               // UDMA 0-6
        Assert.NotEqual(0, W(82) & 0x0010);              // PACKET feature set
        Assert.Equal(0xA5, id[510]);
        byte sum = 0;
        foreach (byte x in id) sum += x;
        Assert.Equal(0, sum);                           // checksum word 255
    }

    [Fact]
    public void Serial_IsDerivedFromTheName_StableAndDistinct()
    {
        using var a = new AtapiCdrom("ahci-cd 0:3:0 port 0", null);
        using var a2 = new AtapiCdrom("ahci-cd 0:3:0 port 0", new TrackedMedium(2048));
        using var b = new AtapiCdrom("ahci-cd 0:3:0 port 1", null);
        Assert.Equal(a.Serial, a2.Serial);
        Assert.NotEqual(a.Serial, b.Serial);
        Assert.All(a.Serial, ch => Assert.InRange(ch, ' ', '~'));
    }

    [Fact]
    public void IdentifyPacketDevice_IntoAShortPrdt_AbortsWritingNothing()
    {
        using var d = Drive();
        using var b = new GuestBuffers(256, 200);
        var c = d.Execute(new AtaCommand(0xA1, 0, 0, 0, 0, 0), default, b.List);
        Assert.True(c.IsError);
        Assert.Equal(AtaCompletion.ErrorAbort, c.Error);
        Assert.Equal(0, b.Written());
    }

    [Fact]
    public void IdentifyDevice_AbortsWithTheAtapiSignatureInTheRegisters()
    {
        using var d = Drive();
        using var b = new GuestBuffers(512);
        var c = d.Execute(new AtaCommand(0xEC, 0, 0, 0, 0, 0), default, b.List);
        Assert.True(c.IsError);
        Assert.Equal(AtaCompletion.ErrorAbort, c.Error & AtaCompletion.ErrorAbort);
        Assert.Equal(0x14UL, (c.Lba >> 8) & 0xFF);      // LBA mid
        Assert.Equal(0xEBUL, (c.Lba >> 16) & 0xFF);     // LBA high
        Assert.Equal(0x01UL, c.Lba & 0xFF);
        Assert.Equal(1, c.Count);
        Assert.Equal(0, b.Written());
    }

    [Theory]
    [InlineData(0x25)]      // READ DMA EXT: a disk command
    [InlineData(0xCA)]      // WRITE DMA
    [InlineData(0x60)]      // READ FPDMA QUEUED
    [InlineData(0x00)]      // NOP
    [InlineData(0xFF)]
    public void OtherAtaCommands_Abort(byte command)
    {
        using var d = Drive();
        using var b = new GuestBuffers(4096);
        var c = d.Execute(new AtaCommand(command, 8, 0, 8, 0x40, 0), default, b.List);
        Assert.True(c.IsError);
        Assert.Equal(AtaCompletion.ErrorAbort, c.Error);
        Assert.Equal(0, b.Written());
    }

    [Fact]
    public void SetFeatures_TransferMode_IsReportedByIdentify_AndAnUnsupportedModeAborts()
    {
        using var d = Drive();
        Assert.False(d.Execute(new AtaCommand(0xEF, 0x03, 0, 0x42, 0, 0), default, default).IsError);   // UDMA 2
        using (var b = new GuestBuffers(512))
        {
            d.Execute(new AtaCommand(0xA1, 0, 0, 0, 0, 0), default, b.List);
            Assert.Equal(0x047F, BinaryPrimitives.ReadUInt16LittleEndian(b.Bytes[176..]));
        }
        Assert.False(d.Execute(new AtaCommand(0xEF, 0x03, 0, 0x21, 0, 0), default, default).IsError);   // MWDMA 1
        using (var b = new GuestBuffers(512))
        {
            d.Execute(new AtaCommand(0xA1, 0, 0, 0, 0, 0), default, b.List);
            Assert.Equal(0x0207, BinaryPrimitives.ReadUInt16LittleEndian(b.Bytes[126..]));
            Assert.Equal(0x007F, BinaryPrimitives.ReadUInt16LittleEndian(b.Bytes[176..]));
        }
        Assert.True(d.Execute(new AtaCommand(0xEF, 0x03, 0, 0x47, 0, 0), default, default).IsError);    // UDMA 7
        Assert.True(d.Execute(new AtaCommand(0xEF, 0x03, 0, 0x23, 0, 0), default, default).IsError);    // MWDMA 3
        Assert.False(d.Execute(new AtaCommand(0xEF, 0x02, 0, 0, 0, 0), default, default).IsError);      // enable write cache: accepted
    }

    [Fact]
    public void CheckPowerMode_ReportsActive()
    {
        using var d = Drive();
        var c = d.Execute(new AtaCommand(0xE5, 0, 0, 0, 0, 0), default, default);
        Assert.False(c.IsError);
        Assert.Equal(0xFF, c.Count);
    }

    [Fact]
    public void DeviceReset_ReportsTheSignature_ClearsTheLock_AndPostsAResetUnitAttention()
    {
        using var d = Ready(Drive());
        Run(d, 0x1E, 0, 0, 0, 1, 0);
        Assert.True(d.Locked);
        var c = d.Execute(new AtaCommand(0x08, 0, 0, 0, 0, 0), default, default);
        Assert.False(c.IsError);
        Assert.Equal(0xEB1401UL, c.Lba);
        Assert.Equal(1, c.Count);
        Assert.False(d.Locked);
        Assert.NotNull(d.MediumPath);
        AssertCheck(d, Run(d, 0x00), SenseCode.PowerOnReset);
    }

    [Fact]
    public void Packet_ShorterThanTwelveBytes_Aborts()
    {
        using var d = Drive();
        var c = d.Execute(PacketCommand, new byte[8], default);
        Assert.True(c.IsError);
        Assert.Equal(AtaCompletion.ErrorAbort, c.Error);
    }

    [Fact]
    public void DisposedDrive_AbortsCommands_AndDisposesItsMedium()
    {
        var medium = new TrackedMedium(2048);
        var d = new AtapiCdrom("cd", medium);
        d.Dispose();
        d.Dispose();
        Assert.Equal(1, medium.Disposals);
        Assert.True(Run(d, 0x00).IsError);
        Assert.Null(d.MediumPath);
    }
}
