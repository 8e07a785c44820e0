using System.Buffers.Binary;
using System.Text;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using static Xhyve.Vmm.Tests.Ahci.Atapi.Atapi;

namespace Xhyve.Vmm.Tests.Ahci.Atapi;

/// <summary>The SCSI commands inside PACKET: their decoding, response bytes, allocation lengths and sense data.</summary>
public sealed class AtapiPacketCommandTests
{
    private const int Sectors = 40;
    private static AtapiCdrom Drive(long size = Sectors * 2048) => Ready(new AtapiCdrom("ahci-cd 0:3:0 port 0", new TrackedMedium(size)));
    private static AtapiCdrom Empty() => Ready(new AtapiCdrom("ahci-cd 0:3:0 port 0", null));

    [Fact]
    public void PowerOn_TheFirstCommandGetsTheResetUnitAttention_ThenTheDriveIsReady()
    {
        using var d = new AtapiCdrom("cd", new TrackedMedium(2048));
        AssertCheck(d, Run(d, 0x00), SenseCode.PowerOnReset);
        AssertGood(Run(d, 0x00), 0);
    }

    [Fact]
    public void TestUnitReady_OnAnEmptyDrive_IsNotReadyMediumNotPresent()
    {
        using var d = Empty();
        var c = Run(d, 0x00);
        Assert.Equal(0x20, c.Error);                    // sense key 2 in the high nibble, no ABRT
        AssertCheck(d, Run(d, 0x00), SenseCode.MediumNotPresent);
    }

    [Fact]
    public void RequestSense_ReturnsFixedFormatData_ThenClearsIt()
    {
        using var d = Drive();
        Run(d, 0xFF);
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0x03, 0, 0, 0, 252, 0), 18);
        Assert.Equal(18, b.Written());
        Assert.Equal(0x70, b.Bytes[0]);
        Assert.Equal(SenseCode.KeyIllegalRequest, b.Bytes[2]);
        Assert.Equal(10, b.Bytes[7]);
        Assert.Equal(0x20, b.Bytes[12]);
        Assert.Equal(0x00, b.Bytes[13]);
        Assert.Equal(SenseCode.None, Sense(d));
    }

    [Fact]
    public void RequestSense_HonoursTheAllocationLength_AndRefusesDescriptorFormat()
    {
        using var d = Drive();
        Run(d, 0xFF);
        using (var b = new GuestBuffers(64))
        {
            AssertGood(Run(d, b, 0x03, 0, 0, 0, 8, 0), 8);
            Assert.Equal(8, b.Written());
        }
        AssertCheck(d, Run(d, 0x03, 0x01, 0, 0, 18, 0), SenseCode.InvalidFieldInCdb);
    }

    [Fact]
    public void RequestSense_ReportsAPendingUnitAttentionOnce_ThenTheEmptyDrivesState()
    {
        using var d = new AtapiCdrom("cd", null);
        Assert.Equal(SenseCode.PowerOnReset, Sense(d));
        Assert.Equal(SenseCode.MediumNotPresent, Sense(d));
        AssertCheck(d, Run(d, 0x00), SenseCode.MediumNotPresent);      // the attention was consumed by REQUEST SENSE
    }

    [Fact]
    public void UnknownOpcode_IsInvalidCommandOperationCode_WithAbortInTheErrorRegister()
    {
        using var d = Drive();
        var c = Run(d, 0xFF);
        Assert.Equal(0x54, c.Error);
        Assert.Equal(0x41, c.Status);
        AssertCheck(d, Run(d, 0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0), SenseCode.InvalidOperationCode);   // WRITE(10): read-only drive
    }

    [Fact]
    public void Inquiry_StandardData_NamesARemovableCdDvdDevice()
    {
        using var d = Drive();
        using var b = new GuestBuffers(96);
        AssertGood(Run(d, b, 0x12, 0, 0, 0, 96, 0), 36);
        Assert.Equal(36, b.Written());
        var r = b.Bytes;
        Assert.Equal(0x05, r[0]);
        Assert.Equal(0x80, r[1]);
        Assert.Equal(0x02, r[3] & 0x0F);
        Assert.Equal(31, r[4]);
        Assert.Equal("XHYVE   ", Encoding.ASCII.GetString(r[8..16]));
        Assert.Equal("DVD-ROM         ", Encoding.ASCII.GetString(r[16..32]));
        Assert.Equal("1.0 ", Encoding.ASCII.GetString(r[32..36]));
    }

    [Fact]
    public void Inquiry_WritesNoMoreThanTheAllocationLength()
    {
        using var d = Drive();
        using var b = new GuestBuffers(96);
        AssertGood(Run(d, b, 0x12, 0, 0, 0, 5, 0), 5);
        Assert.Equal(5, b.Written());
        Assert.Equal(31, b.Bytes[4]);                   // the length field still tells the whole length
    }

    [Fact]
    public void Inquiry_IntoAPrdtShorterThanTheResponse_IsACheckCondition_WritingNothing()
    {
        using var d = Drive();
        using var b = new GuestBuffers(20);
        AssertCheck(d, Run(d, b, 0x12, 0, 0, 0, 36, 0), SenseCode.InvalidFieldInCdb);
        Assert.Equal(0, b.Written());
    }

    [Fact]
    public void Inquiry_VpdPages_ListSerialAndIdentification()
    {
        using var d = Drive();
        using (var b = new GuestBuffers(255))
        {
            AssertGood(Run(d, b, 0x12, 1, 0x00, 0, 255, 0), 7);
            Assert.Equal(new byte[] { 0x05, 0x00, 0x00, 3, 0x00, 0x80, 0x83 }, b.Bytes[..7].ToArray());
        }
        using (var b = new GuestBuffers(255))
        {
            AssertGood(Run(d, b, 0x12, 1, 0x80, 0, 255, 0), 24);
            Assert.Equal(0x80, b.Bytes[1]);
            Assert.Equal(20, b.Bytes[3]);
            Assert.Equal(d.Serial, Encoding.ASCII.GetString(b.Bytes[4..24]));
        }
        using (var b = new GuestBuffers(255))
        {
            AssertGood(Run(d, b, 0x12, 1, 0x83, 0, 255, 0), 52);
            Assert.Equal(0x83, b.Bytes[1]);
            Assert.Equal(48, BinaryPrimitives.ReadUInt16BigEndian(b.Bytes[2..]));
            Assert.Equal(0x02, b.Bytes[4]);             // ASCII
            Assert.Equal(0x01, b.Bytes[5] & 0x0F);      // T10 vendor ID
            Assert.Equal(44, b.Bytes[7]);
            Assert.Equal("XHYVE   DVD-ROM         " + d.Serial, Encoding.ASCII.GetString(b.Bytes[8..52]));
        }
    }

    [Theory]
    [InlineData(1, 0x99)]       // a VPD page we do not have
    [InlineData(0, 0x80)]       // a page code without EVPD
    [InlineData(2, 0x00)]       // CmdDt
    public void Inquiry_BadPageRequests_AreInvalidFieldInCdb(byte flags, byte page)
    {
        using var d = Drive();
        using var b = new GuestBuffers(255);
        AssertCheck(d, Run(d, b, 0x12, flags, page, 0, 255, 0), SenseCode.InvalidFieldInCdb);
        Assert.Equal(0, b.Written());
    }

    [Theory]
    [InlineData(Sectors * 2048L, Sectors - 1)]
    [InlineData(10 * 2048L + 1000, 9)]              // a partial last sector is not part of the disc
    public void ReadCapacity_ReportsTheLastLbaAnd2048ByteBlocks(long size, uint lastLba)
    {
        using var d = Drive(size);
        using var b = new GuestBuffers(8);
        AssertGood(Run(d, b, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 8);
        Assert.Equal(lastLba, BinaryPrimitives.ReadUInt32BigEndian(b.Bytes));
        Assert.Equal(2048u, BinaryPrimitives.ReadUInt32BigEndian(b.Bytes[4..]));
    }

    [Fact]
    public void ReadCapacity_OnAnEmptyDrive_IsNotReady()
    {
        using var d = Empty();
        using var b = new GuestBuffers(8);
        AssertCheck(d, Run(d, b, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), SenseCode.MediumNotPresent);
        Assert.Equal(0, b.Written());
    }

    [Fact]
    public void ModeSense_CapabilitiesPage_HasTheHeaderAndTheMechanism()
    {
        using var d = Drive();
        using var b = new GuestBuffers(256);
        AssertGood(Run(d, b, 0x5A, 0, 0x2A, 0, 0, 0, 0, 1, 0, 0), 30);
        var r = b.Bytes;
        Assert.Equal(28, BinaryPrimitives.ReadUInt16BigEndian(r));
        Assert.Equal(0x01, r[2]);                       // a data CD in the drive
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(r[6..]));   // no block descriptors
        Assert.Equal(0x2A, r[8]);
        Assert.Equal(0x14, r[9]);
        Assert.Equal(0x29, r[14]);                      // tray, eject, lock supported; not locked
        Run(d, 0x1E, 0, 0, 0, 1, 0);
        AssertGood(Run(d, b, 0x5A, 0, 0x2A, 0, 0, 0, 0, 1, 0, 0), 30);
        Assert.Equal(0x2B, r[14]);                      // lock state
    }

    [Fact]
    public void ModeSense_AllPages_ReturnsErrorRecoveryThenCapabilities_CutToTheAllocationLength()
    {
        using var d = Empty();
        using var b = new GuestBuffers(256);
        AssertGood(Run(d, b, 0x5A, 0, 0x3F, 0, 0, 0, 0, 1, 0, 0), 42);
        Assert.Equal(40, BinaryPrimitives.ReadUInt16BigEndian(b.Bytes));
        Assert.Equal(0x70, b.Bytes[2]);                 // no disc
        Assert.Equal(0x01, b.Bytes[8]);
        Assert.Equal(0x2A, b.Bytes[20]);
        using var small = new GuestBuffers(256);
        AssertGood(Run(d, small, 0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 8, 0), 8);
        Assert.Equal(8, small.Written());
        Assert.Equal(40, BinaryPrimitives.ReadUInt16BigEndian(small.Bytes));
    }

    [Fact]
    public void ModeSense_ChangeableValues_AreAllZero()
    {
        using var d = Drive();
        using var b = new GuestBuffers(256);
        AssertGood(Run(d, b, 0x5A, 0, 0x40 | 0x2A, 0, 0, 0, 0, 1, 0, 0), 30);
        Assert.Equal(0x2A, b.Bytes[8]);
        Assert.All(b.Bytes[10..30].ToArray(), x => Assert.Equal(0, x));
    }

    [Theory]
    [InlineData(0xC0 | 0x2A, 0, 0x39)]      // saved values
    [InlineData(0x05, 0, 0x24)]             // write parameters page: not here
    [InlineData(0x2A, 1, 0x24)]             // a subpage
    public void ModeSense_UnsupportedRequests_AreIllegal(byte pageControl, byte subpage, byte asc)
    {
        using var d = Drive();
        using var b = new GuestBuffers(256);
        AssertCheck(d, Run(d, b, 0x5A, 0, pageControl, subpage, 0, 0, 0, 1, 0, 0), new SenseCode(5, asc, 0));
    }

    [Fact]
    public void ReadToc_Format0_Lba_ListsTheDataTrackAndTheLeadOut()
    {
        using var d = Drive();
        using var b = new GuestBuffers(1024);
        AssertGood(Run(d, b, 0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0), 20);
        Assert.Equal(new byte[]
        {
            0, 18, 1, 1,
            0, 0x14, 1, 0, 0, 0, 0, 0,
            0, 0x14, 0xAA, 0, 0, 0, 0, Sectors,
        }, b.Bytes[..20].ToArray());
        Assert.Equal(20, b.Written());
    }

    [Fact]
    public void ReadToc_Format0_Msf_AddsTheTwoSecondLeadIn()
    {
        using var d = Drive();
        using var b = new GuestBuffers(1024);
        AssertGood(Run(d, b, 0x43, 0x02, 0, 0, 0, 0, 0, 0x03, 0x24, 0), 20);
        Assert.Equal(new byte[] { 0, 0, 2, 0 }, b.Bytes[8..12].ToArray());                  // 00:02:00
        Assert.Equal(new byte[] { 0, 0, 2, Sectors }, b.Bytes[16..20].ToArray());           // 190 frames
    }

    [Fact]
    public void ReadToc_FromTheLeadOut_ListsOnlyIt_AndALaterTrackIsInvalid()
    {
        using var d = Drive();
        using var b = new GuestBuffers(1024);
        AssertGood(Run(d, b, 0x43, 0, 0, 0, 0, 0, 0xAA, 0x03, 0x24, 0), 12);
        Assert.Equal(10, BinaryPrimitives.ReadUInt16BigEndian(b.Bytes));
        Assert.Equal(0xAA, b.Bytes[6]);
        AssertCheck(d, Run(d, b, 0x43, 0, 0, 0, 0, 0, 2, 0x03, 0x24, 0), SenseCode.InvalidFieldInCdb);
    }

    [Fact]
    public void ReadToc_Format1_GivesTheSessionInformation_AlsoInTheOldFormatField()
    {
        using var d = Drive();
        using var b = new GuestBuffers(1024);
        AssertGood(Run(d, b, 0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0), 12);
        var expected = new byte[] { 0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0 };
        Assert.Equal(expected, b.Bytes[..12].ToArray());
        using var old = new GuestBuffers(1024);
        AssertGood(Run(d, old, 0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40), 12);   // SFF-8020: format in byte 9 bits 7-6
        Assert.Equal(expected, old.Bytes[..12].ToArray());
    }

    [Fact]
    public void ReadToc_UnsupportedFormat_AndEmptyDrive_AreRefused()
    {
        using var d = Drive();
        AssertCheck(d, Run(d, 0x43, 0, 5, 0, 0, 0, 0, 0, 12, 0), SenseCode.InvalidFieldInCdb);
        using var e = Empty();
        AssertCheck(e, Run(e, 0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0), SenseCode.MediumNotPresent);
    }

    private static byte[] GetConfiguration(AtapiCdrom d, byte rt, ushort start, int allocation = 1024)
    {
        using var b = new GuestBuffers(1024);
        var c = Run(d, b, 0x46, rt, (byte)(start >> 8), (byte)start, 0, 0, 0, (byte)(allocation >> 8), (byte)allocation, 0);
        AssertGood(c, c.TransferredBytes);
        Assert.Equal(c.TransferredBytes, b.Written());
        return b.Bytes[..c.TransferredBytes].ToArray();
    }

    /// <summary>The feature codes in a GET CONFIGURATION response, with their current bits.</summary>
    private static List<(int Code, bool Current)> Features(byte[] r)
    {
        Assert.Equal(r.Length - 4, (int)BinaryPrimitives.ReadUInt32BigEndian(r));
        var list = new List<(int, bool)>();
        for (int at = 8; at < r.Length; at += 4 + r[at + 3]) list.Add((BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(at)), (r[at + 2] & 1) != 0));
        return list;
    }

    [Fact]
    public void GetConfiguration_AllFeatures_WithACdInTheDrive()
    {
        using var d = Drive();
        var r = GetConfiguration(d, 0, 0);
        Assert.Equal(0x0008, BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(6)));
        Assert.Equal([(0, true), (1, true), (2, true), (3, true), (0x10, true)], Features(r));
        // Profile list: DVD-ROM then CD-ROM, the CD current.
        Assert.Equal(new byte[] { 0, 0x00, 0x03, 8, 0, 0x10, 0, 0, 0, 0x08, 1, 0 }, r[8..20]);
        Assert.Equal(new byte[] { 0, 0x01, 0x0B, 8, 0, 0, 0, 2, 1, 0, 0, 0 }, r[20..32]);     // core: ATAPI
        Assert.Equal(0x29, r[40 + 4]);                                                         // removable medium: tray, eject, lock
        Assert.Equal(2048u, BinaryPrimitives.ReadUInt32BigEndian(r.AsSpan(48 + 4)));          // random readable
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(48 + 8)));
    }

    [Fact]
    public void GetConfiguration_ALargerMediumThanACd_IsADvd()
    {
        using var d = Drive((AtapiCdrom.CdMaxSectors + 1) * 2048);
        var r = GetConfiguration(d, 0, 0);
        Assert.Equal(0x0010, BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(6)));
        Assert.Equal(1, r[8 + 6]);                      // DVD-ROM profile current
        Assert.Equal(0, r[8 + 10]);
        Assert.Equal(16, BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(48 + 8)));
    }

    [Fact]
    public void GetConfiguration_EmptyDrive_HasNoCurrentProfile_AndRt1LeavesOutRandomReadable()
    {
        using var d = Empty();
        var all = GetConfiguration(d, 0, 0);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(all.AsSpan(6)));
        Assert.Equal([(0, true), (1, true), (2, true), (3, true), (0x10, false)], Features(all));
        Assert.Equal(0, all[8 + 6] | all[8 + 10]);      // no profile current
        Assert.Equal([(0, true), (1, true), (2, true), (3, true)], Features(GetConfiguration(d, 1, 0)));
    }

    [Fact]
    public void GetConfiguration_StartingFeatureAndRt2_SelectFeatures()
    {
        using var d = Drive();
        Assert.Equal([(2, true), (3, true), (0x10, true)], Features(GetConfiguration(d, 0, 2)));
        Assert.Equal([(3, true)], Features(GetConfiguration(d, 2, 3)));
        Assert.Empty(Features(GetConfiguration(d, 2, 0x1F)));            // a feature we lack: just the header
        var header = GetConfiguration(d, 0, 0, allocation: 8);
        Assert.Equal(8, header.Length);
        Assert.Equal(56u, BinaryPrimitives.ReadUInt32BigEndian(header));   // the whole length, as it was cut
        AssertCheck(d, Run(d, 0x46, 3, 0, 0, 0, 0, 0, 0, 8, 0), SenseCode.InvalidFieldInCdb);
    }

    [Fact]
    public void GetConfiguration_RemovableMediumFeature_HasNoLockStateBit_WhenLocked()
    {
        using var d = Drive();
        Run(d, 0x1E, 0, 0, 0, 1, 0);
        Assert.True(d.Locked);
        var r = GetConfiguration(d, 2, 3);
        Assert.Equal(0x29, r[8 + 4]);                   // MMC: bit 1 of this feature is no lock state
    }

    [Fact]
    public void ReadDiscInformation_DescribesAFinalizedOneTrackDisc()
    {
        using var d = Drive();
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0), 34);
        Assert.Equal(32, BinaryPrimitives.ReadUInt16BigEndian(b.Bytes));
        Assert.Equal(0x0E, b.Bytes[2]);
        Assert.Equal(new byte[] { 1, 1, 1, 1 }, b.Bytes[3..7].ToArray());
        AssertCheck(d, Run(d, b, 0x51, 1, 0, 0, 0, 0, 0, 0, 34, 0), SenseCode.InvalidFieldInCdb);
        using var e = Empty();
        AssertCheck(e, Run(e, b, 0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0), SenseCode.MediumNotPresent);
    }

    [Fact]
    public void MechanismStatus_ReportsAnIdleDriveWithoutChanger()
    {
        using var d = Drive();
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0), 8);
        Assert.All(b.Bytes[..8].ToArray(), x => Assert.Equal(0, x));
    }
}
