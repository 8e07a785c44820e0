using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using static Xhyve.Vmm.Tests.Ahci.Atapi.Atapi;

namespace Xhyve.Vmm.Tests.Ahci.Atapi;

/// <summary>Media changes: insert and eject from the host, the guest's eject and lock, the unit attentions and
/// the media events (GET EVENT STATUS NOTIFICATION) a polling guest sees, and reset.</summary>
public sealed class AtapiMediaTests
{
    private const byte NoChange = 0, NewMedia = 2, MediaRemoval = 3;

    /// <summary>GESN for the media class: (event code, media status byte).</summary>
    private static (byte Event, byte Status) MediaEvent(AtapiCdrom d)
    {
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0x4A, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0), 8);
        Assert.Equal(6, BinaryPrimitives.ReadUInt16BigEndian(b.Bytes));
        Assert.Equal(0x04, b.Bytes[2]);                 // media class, NEA clear
        Assert.Equal(0x10, b.Bytes[3]);                 // media is the supported class
        return ((byte)(b.Bytes[4] & 0x0F), b.Bytes[5]);
    }

    private static byte[] Eject => [0x1B, 0, 0, 0, 0x02, 0];
    private static byte[] Prevent => [0x1E, 0, 0, 0, 0x01, 0];
    private static byte[] Allow => [0x1E, 0, 0, 0, 0x00, 0];

    [Fact]
    public void Insert_IntoAnEmptyDrive_GivesNotReadyToReadyChange_ThenTheDriveIsReady()
    {
        using var d = Ready(new AtapiCdrom("cd", null));
        Sense(d);
        AssertCheck(d, Run(d, 0x00), SenseCode.MediumNotPresent);
        d.Insert(new TrackedMedium(2048 * 8, "/isos/new.iso"));
        Assert.Equal("/isos/new.iso", d.MediumPath);
        AssertCheck(d, Run(d, 0x00), SenseCode.NotReadyToReadyChange);
        AssertGood(Run(d, 0x00), 0);
        Assert.Equal(8, d.Capacity);
    }

    [Fact]
    public void Insert_ReplacingAMedium_DisposesTheOldOne()
    {
        var first = new TrackedMedium(2048, "/a.iso");
        using var d = Ready(new AtapiCdrom("cd", first));
        var second = new TrackedMedium(4096, "/b.iso");
        d.Insert(second);
        Assert.Equal(1, first.Disposals);
        Assert.Equal(0, second.Disposals);
        Assert.Equal("/b.iso", d.MediumPath);
        Assert.Equal((NewMedia, (byte)0x02), MediaEvent(d));
    }

    [Fact]
    public void UnitAttention_DoesNotFailInquiryGesnOrGetConfiguration_AndWaitsForTheNextOtherCommand()
    {
        using var d = Ready(new AtapiCdrom("cd", null));
        d.Insert(new TrackedMedium(2048));
        using var b = new GuestBuffers(256);
        AssertGood(Run(d, b, 0x12, 0, 0, 0, 36, 0), 36);
        Assert.Equal((NewMedia, (byte)0x02), MediaEvent(d));     // GESN reports the change as a media event
        AssertGood(Run(d, b, 0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0), 8);
        AssertCheck(d, Run(d, b, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), SenseCode.NotReadyToReadyChange);
        AssertGood(Run(d, b, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), 8);
    }

    [Fact]
    public void MediaEvents_AreReportedOnce_WithTheMediaStatus()
    {
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048)));
        Assert.Equal((NoChange, (byte)0x02), MediaEvent(d));
        d.Eject();
        Assert.Equal((MediaRemoval, (byte)0x00), MediaEvent(d));
        Assert.Equal((NoChange, (byte)0x00), MediaEvent(d));
        d.Insert(new TrackedMedium(2048));
        Assert.Equal((NewMedia, (byte)0x02), MediaEvent(d));
        Assert.Equal((NoChange, (byte)0x02), MediaEvent(d));
    }

    [Fact]
    public void Gesn_AsynchronousIsRefused_AndOtherClassesGetNoEventAvailable()
    {
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048)));
        d.Eject();
        AssertCheck(d, Run(d, 0x4A, 0x00, 0, 0, 0x10, 0, 0, 0, 8, 0), SenseCode.InvalidFieldInCdb);
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0x4A, 0x01, 0, 0, 0x02, 0, 0, 0, 8, 0), 4);   // operational change class only
        Assert.Equal(new byte[] { 0, 2, 0x80, 0x10 }, b.Bytes[..4].ToArray());
        Assert.Equal((MediaRemoval, (byte)0x00), MediaEvent(d));             // the media event was kept for its class
    }

    [Fact]
    public void Gesn_WithAnAllocationTooShortForTheEvent_KeepsTheEventForTheNextPoll()
    {
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048)));
        d.Eject();
        using var b = new GuestBuffers(64);
        AssertGood(Run(d, b, 0x4A, 0x01, 0, 0, 0x10, 0, 0, 0, 4, 0), 4);   // the header only
        Assert.Equal(4, b.Written());
        Assert.Equal((MediaRemoval, (byte)0x00), MediaEvent(d));
    }

    [Fact]
    public void Insert_IntoADisposedDrive_Throws_AndClosesTheMediumItWasGiven()
    {
        var d = new AtapiCdrom("cd", null);
        d.Dispose();
        var medium = new TrackedMedium(2048);
        Assert.Throws<ObjectDisposedException>(() => d.Insert(medium));
        Assert.Equal(1, medium.Disposals);
    }

    [Fact]
    public void HostEject_EmptiesTheDrive_DisposingTheMedium()
    {
        var medium = new TrackedMedium(2048);
        using var d = Ready(new AtapiCdrom("cd", medium));
        d.Eject();
        Assert.Equal(1, medium.Disposals);
        Assert.Null(d.MediumPath);
        Assert.Equal(0, d.Capacity);
        AssertCheck(d, Run(d, 0x00), SenseCode.MediumNotPresent);
        d.Eject();                                      // already empty: nothing happens
        Assert.Equal(1, medium.Disposals);
    }

    [Fact]
    public void HostEject_BeforeTheGuestSawAnInsert_DropsTheNowFalseReadyChange()
    {
        using var d = Ready(new AtapiCdrom("cd", null));
        d.Insert(new TrackedMedium(2048));
        d.Eject();
        AssertCheck(d, Run(d, 0x00), SenseCode.MediumNotPresent);
    }

    [Fact]
    public void GuestEject_WhileLocked_IsMediumRemovalPrevented_AndAllowedAfterAllow()
    {
        var medium = new TrackedMedium(2048);
        using var d = Ready(new AtapiCdrom("cd", medium));
        AssertGood(Run(d, Prevent), 0);
        Assert.True(d.Locked);
        AssertCheck(d, Run(d, Eject), SenseCode.MediumRemovalPrevented);
        Assert.Equal(0, medium.Disposals);
        Assert.NotNull(d.MediumPath);
        AssertGood(Run(d, Allow), 0);
        Assert.False(d.Locked);
        AssertGood(Run(d, Eject), 0);
        Assert.Equal(1, medium.Disposals);
        Assert.Null(d.MediumPath);
        Assert.Equal((MediaRemoval, (byte)0x00), MediaEvent(d));
    }

    [Theory]
    [InlineData(0x01)]      // start (spin up)
    [InlineData(0x03)]      // load (close the tray)
    [InlineData(0x00)]      // stop
    [InlineData(0x22)]      // a power condition with LoEj: not an eject
    public void StartStopUnit_WithoutAnEject_KeepsTheMedium(byte flags)
    {
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048)));
        AssertGood(Run(d, 0x1B, 0, 0, 0, flags, 0), 0);
        Assert.NotNull(d.MediumPath);
    }

    [Fact]
    public void Reset_ClearsTheLockAndTheSense_KeepsTheMedium_AndPostsAResetUnitAttention()
    {
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048, "/keep.iso")));
        Run(d, Prevent);
        Run(d, 0xFF);                                   // leaves ILLEGAL REQUEST sense behind
        d.Reset();
        Assert.False(d.Locked);
        Assert.Equal("/keep.iso", d.MediumPath);
        Assert.Equal(SenseCode.PowerOnReset, Sense(d));  // the attention, not the old sense
        AssertGood(Run(d, 0x00), 0);
    }

    [Fact]
    public async Task InsertAndEject_WhileTheGuestReads_NeverFailAReadWithAnException()
    {
        // The medium is disposed by Insert/Eject; a read in flight must finish on the medium it started with.
        using var d = Ready(new AtapiCdrom("cd", new TrackedMedium(2048 * 16) { ReadSpin = 5000 }));
        using var stop = new CancellationTokenSource();
        var changer = Task.Run(() =>
        {
            int i = 0;
            while (!stop.IsCancellationRequested)
            {
                if (i++ % 2 == 0) d.Insert(new TrackedMedium(2048 * 16) { ReadSpin = 5000 });
                else d.Eject();
                _ = d.MediumPath;
                _ = d.Locked;
            }
        });
        using var b = new GuestBuffers(2048 * 4);
        var cdb = new byte[16];
        cdb[0] = 0x28; cdb[8] = 4;
        int good = 0, checks = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // At least half a second, and until both outcomes were seen (the changer thread may start late on a busy host).
        while ((clock.ElapsedMilliseconds < 500 || good == 0 || checks == 0) && clock.ElapsedMilliseconds < 30_000)
        {
            var c = d.Execute(PacketCommand, cdb, b.List);
            if (c.IsError)
            {
                checks++;
                var sense = Sense(d);
                Assert.Contains(sense, new[] { SenseCode.MediumNotPresent, SenseCode.NotReadyToReadyChange, SenseCode.None });
            }
            else { good++; Assert.Equal(8192, c.TransferredBytes); }
        }
        stop.Cancel();
        await changer;
        Assert.True(checks > 0 && good > 0, $"{good} reads, {checks} check conditions");
    }
}
