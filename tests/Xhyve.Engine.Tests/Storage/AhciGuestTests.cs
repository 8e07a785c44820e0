using System.Text;
using System.Text.Json;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Storage;

/// <summary>
/// AHCI end to end (issue 14): the ahci test guest, with a driver of its own, brings the HBA and its ports up and
/// drives an ahci-hd disk (IDENTIFY, DMA over split PRDTs, NCQ with several tags at once, flush, TRIM, errors) and an
/// ahci-cd drive (ATAPI: the ISO's primary volume descriptor and a file's bytes). The test checks what the guest
/// reports and the image bytes it wrote; the same guest under QEMU's ich9-ahci must agree; and a guest polling the
/// CD sees an eject and an insert made through the control API.
/// </summary>
public sealed class AhciGuestTests() : ControlledEngineTest("ahci")
{
    private const int Sectors = 16384;            // 8 MiB
    private const int NcqBase = 65536, NcqBytes = 16384, TrimAt = 1 << 20, TrimBytes = 8192;
    private const string VolumeId = "XHYVE_AHCI_TEST";
    private static readonly string HelloText = "Hello from the AHCI test ISO\n" +
        string.Concat(Enumerable.Range(0, 120).Select(i => $"line {i:D3} of a file longer than one CD sector\n"));

    private string NewRawImage(string name = "disk.img", long bytes = Sectors * 512L)
    {
        string path = Path.Combine(_dir, name);
        using (var f = File.Create(path)) f.SetLength(bytes);
        return path;
    }

    private string NewIso(string name = "test.iso", string volumeId = VolumeId, string text = "") =>
        IsoImage.WithHelloFile(Path.Combine(_dir, name), volumeId, text.Length > 0 ? text : HelloText);

    private static EngineRun RunAhci(string cmdline, params string[] slots) => EngineProcess.RunGuest("ahci", cmdline, slots, timeoutSeconds: 120);

    /// <summary>The guest's pattern, byte i of each 512-byte unit at byte offset 512 * unit (whatever the sector size).</summary>
    private static byte Pattern(long offset) => unchecked((byte)(offset / 512 * 31 + offset % 512 * 7 + 1));

    private static void AssertPattern(byte[] image, long offset, int bytes, string what)
    {
        for (long at = offset; at < offset + bytes; at++)
            Assert.True(image[at] == Pattern(at), $"{what}: byte {at} is 0x{image[at]:x2}, expected 0x{Pattern(at):x2}");
    }

    private static void AssertZero(byte[] image, long offset, int bytes, string what)
    {
        for (long at = offset; at < offset + bytes; at++) Assert.True(image[at] == 0, $"{what}: byte {at} is 0x{image[at]:x2}, expected 0");
    }

    private static void AssertKeys(EngineRun run, string expected, params string[] keys)
    {
        foreach (var key in keys)
            Assert.True(run.Results.TryGetValue(key, out var v) && v == expected, $"{key}={(run.Results.TryGetValue(key, out var x) ? x : "(missing)")}, expected {expected}\n{run}");
    }

    /// <summary>What an ahci-hd image of <paramref name="bytes"/> with the given sector sizes must report in IDENTIFY,
    /// and the round trips that must have succeeded.</summary>
    private static void AssertDiskResults(EngineRun run, long bytes, int logical, int physical, int ncqTags)
    {
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        AssertKeys(run, "1", "disk_found", "disk_lba48", "disk_ncq", "disk_trim", "disk_dma", "dma_readback", "dma28_readback", "last_readback",
            "ncq_write_sdb", "ncq_read_sdb", "read_past_end", "unknown_command", "alive_after_errors");
        AssertKeys(run, "0", "disk_identify", "dma_write", "dma_read", "dma28_write", "dma28_read", "last_write", "set_features", "ncq_write",
            "ncq_read", "flush_ext", "flush", "trim", "trim_read", "read_log_ncq");
        Assert.Equal((bytes / logical).ToString(), r["disk_capacity"]);
        Assert.Equal((logical, physical), (int.Parse(r["disk_logical_sector"]), int.Parse(r["disk_physical_sector"])));
        Assert.Equal("32", r["disk_ncq_depth"]);
        Assert.Equal("8192", r["dma_write_prdbc"]);                 // PRDBC: the bytes the command moved
        Assert.Equal("8192", r["dma_read_prdbc"]);
        // A PRDT larger than the command: one sector moved (PRDBC), the rest of the buffer untouched.
        AssertKeys(run, "0", "long_prdt");
        AssertKeys(run, "1", "long_prdt_rest_untouched");
        Assert.Equal(logical.ToString(), r["long_prdt_prdbc"]);
        Assert.Equal(ncqTags.ToString(), r["ncq_tags"]);
        Assert.Equal(ncqTags.ToString(), r["ncq_readback"]);
        Assert.False(string.IsNullOrWhiteSpace(r["disk_model"]), run.ToString());
        Assert.False(string.IsNullOrWhiteSpace(r["disk_serial"]), run.ToString());
    }

    /// <summary>The bytes the guest wrote are in the image where it wrote them, and nothing else changed.</summary>
    private static void AssertImage(byte[] image, int ncqTags, int logical)
    {
        AssertPattern(image, 0, 8192, "WRITE DMA EXT at LBA 0");
        AssertPattern(image, 16384, 4096, "WRITE DMA at byte 16 KiB");
        AssertPattern(image, NcqBase, ncqTags * NcqBytes, "WRITE FPDMA QUEUED");
        AssertPattern(image, image.Length - logical, logical, "the last sector");
        AssertZero(image, 8192, 8192, "between the DMA writes");
        AssertZero(image, 20480, NcqBase - 20480, "before the NCQ writes");
        AssertZero(image, NcqBase + ncqTags * NcqBytes, TrimAt - NcqBase - ncqTags * NcqBytes, "after the NCQ writes");
        AssertZero(image, TrimAt + TrimBytes, image.Length - logical - TrimAt - TrimBytes, "after the trimmed range");
    }

    private void AssertCdResults(EngineRun run, string iso, string text)
    {
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        AssertKeys(run, "1", "cd_found", "cd_identify_atapi", "cd_identify_packet12", "cd_inquiry_removable", "cd_pvd", "cd_read12_same",
            "cd_file_found", "cd_alive_after_error");
        AssertKeys(run, "0", "cd_identify", "cd_inquiry", "cd_ready", "cd_read_capacity", "cd_read10", "cd_read12", "cd_file_read", "cd_gesn");
        Assert.Equal("0xeb140101", r["cd_signature"]);
        Assert.Equal(("5", "5"), (r["cd_identify_type"], r["cd_inquiry_type"]));   // CD/DVD device
        Assert.Equal((new FileInfo(iso).Length / 2048).ToString(), r["cd_sectors"]);
        Assert.Equal("2048", r["cd_block_size"]);
        Assert.Equal(VolumeId, r["cd_volume_id"]);
        Assert.Equal(text.Length.ToString(), r["cd_file_size"]);
        Assert.Equal(text[..text.IndexOf('\n')], r["cd_file_head"]);
        Assert.Equal($"0x{IsoImage.Fnv1a(Encoding.ASCII.GetBytes(text)):x8}", r["cd_file_fnv"]);
        Assert.Equal("0x00000002", r["cd_gesn_media_status"]);     // media present, tray closed
        Assert.Equal("0x00052100", r["cd_read_past_end"]);          // ILLEGAL REQUEST, LBA out of range
        Assert.StartsWith("0x00062", r["cd_first_sense"]);           // the first TEST UNIT READY: a unit attention (06/28 or 06/29)
        AssertKeys(run, "0", "cd_mode_sense", "cd_toc", "cd_toc_track1_lba", "cd_get_configuration", "cd_prevent", "cd_allow", "cd_eject");
        Assert.Equal("0x0000002a", r["cd_mode_sense_page"]);         // the capabilities page asked for
        Assert.Equal("257", r["cd_toc_tracks"]);                     // first and last track: 1
        Assert.Equal("0x00000004", r["cd_toc_track1_control"]);      // a data track
        Assert.Equal(("0x000000aa", r["cd_sectors"]), (r["cd_toc_leadout_track"], r["cd_toc_leadout_lba"]));
        AssertKeys(run, "0", "cd_inquiry_short", "cd_read_none");
        AssertKeys(run, "1", "cd_inquiry_short_rest_untouched");    // only the allocation length's 5 bytes written
        Assert.Equal("0x00000521", r["cd_read_across_end"]);        // starts inside, runs past the end: LBA out of range
        Assert.Equal(("0x00000520", "0x00000520"), (r["cd_write10"], r["cd_unknown_command"]));   // invalid command operation code
        Assert.Equal("0x00000053", r["cd_eject_locked_asc"]);        // MEDIUM REMOVAL PREVENTED while locked
        Assert.Equal("0x0000023a", r["cd_after_eject"]);             // then the eject the guest asked for: no medium
    }

    [SkippableTheory]
    [InlineData("", 8)]
    [InlineData("irq=1", 8)]
    [InlineData("ncq=32", 32)]
    [InlineData("irq=1 ncq=32", 32)]
    public void Guest_DrivesTheDiskAndTheCd_WithDmaAndNcq_AndTheHostSeesTheBytes(string options, int ncqTags)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage(), iso = NewIso();
        var run = RunAhci(options, "-s", $"4,ahci-hd,{disk}", "-s", $"5,ahci-cd,{iso}");
        AssertDiskResults(run, Sectors * 512L, 512, 512, ncqTags);
        AssertCdResults(run, iso, HelloText);
        var r = run.Results;
        Assert.Equal("2", r["controllers"]);                        // one HBA per -s slot
        Assert.Equal("0x00010601", r["class"]);
        Assert.Equal("1", r["bar5_memory"]);
        Assert.Equal("1", r["hba_reset_done"]);
        Assert.Equal("0x00010301", r["version"]);                   // AHCI 1.3.1
        Assert.Equal("1", r["cap_ncq"]);
        Assert.Equal("32", r["cap_slots"]);
        // Several tags in flight at once: the guest saw more than one still outstanding after issuing them together.
        Assert.True(Math.Max(int.Parse(r["ncq_write_max_outstanding"]), int.Parse(r["ncq_read_max_outstanding"])) >= 2, run.ToString());
        if (options.Contains("irq")) AssertKeys(run, "1", "msi_cap", "irqs");
        byte[] image = File.ReadAllBytes(disk);
        AssertImage(image, ncqTags, 512);
        Assert.Equal("1", r["trim_reads_zero"]);                    // a raw image's discard leaves zeros
        AssertZero(image, TrimAt, TrimBytes, "the trimmed range");
    }

    [SkippableTheory]
    [InlineData("sectorsize=4096", 4096, 4096)]
    [InlineData("sectorsize=512/4096", 512, 4096)]
    [InlineData("sectorsize=2048", 2048, 2048)]        // any power of two, as bhyve's block layer allows
    [InlineData("sectorsize=1024/8192", 1024, 8192)]
    public void Disk_ReportsItsSectorSizesInIdentify_AndTransfersInThem(string option, int logical, int physical)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage();
        var run = RunAhci("", "-s", $"4,ahci-hd,{disk},{option}");
        AssertDiskResults(run, Sectors * 512L, logical, physical, 8);
        Assert.Equal("0", run.Results["cd_found"]);
        AssertImage(File.ReadAllBytes(disk), 8, logical);
    }

    /// <summary>One controller with two ports; with intx=1 its completions come as INTx (the MSI left off) through
    /// the IOAPIC pin of slot 4 (the HPET watchdog the guest runs has pin 21, slot 5's).</summary>
    [SkippableTheory]
    [InlineData("")]
    [InlineData("intx=1")]
    public void BhyveSpelling_OneControllerWithADiskPortAndACdPort_WorksLikeTwoControllers(string options)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage(), iso = NewIso();
        var run = RunAhci(options, "-s", $"4,ahci,hd:{disk},cd:{iso}");
        AssertDiskResults(run, Sectors * 512L, 512, 512, 8);
        AssertCdResults(run, iso, HelloText);
        Assert.Equal(("1", "2"), (run.Results["controllers"], run.Results["ports"]));
        if (options.Contains("intx")) AssertKeys(run, "1", "irqs");
        AssertImage(File.ReadAllBytes(disk), 8, 512);
    }

    [SkippableFact]
    public void ReadOnlyDisk_FailsEveryWriteWithAnAbort_ReadsStillWork_AndTheImageIsUnchanged()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage();
        Assert.True(RunAhci("", "-s", $"4,ahci-hd,{disk}").Done);
        byte[] before = File.ReadAllBytes(disk);
        var run = RunAhci("", "-s", $"4,ahci-hd,{disk},ro");
        Assert.True(run.Done, run.ToString());
        // 16644 = 0x4104: status DRDY|ERR, error ABRT.
        AssertKeys(run, "16644", "dma_write", "dma28_write", "last_write", "ncq_write", "trim");
        AssertKeys(run, "0", "dma_read", "dma28_read", "ncq_read");
        AssertKeys(run, "1", "dma_readback", "dma28_readback", "last_readback", "alive_after_errors");   // the first run's data
        Assert.Equal(before, File.ReadAllBytes(disk));
    }

    [SkippableFact]
    public void HostileCommands_EndInAnError_AndThePortCarriesOn()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage();
        var run = RunAhci("hostile=1", "-s", $"4,ahci-hd,{disk}");
        Assert.True(run.Done, run.ToString());
        // A PRDT entry outside guest RAM, a read with no PRDT, a FIS that is not a Register H2D FIS, a PRDT smaller
        // than the read: each an error.
        AssertKeys(run, "1", "outside_ram", "empty_prdt", "bad_fis_type", "short_prdt", "alive_after_hostile");
        // Four NCQ reads at once, tag 2 past the end: a task-file error, and the NCQ error log names tag 2.
        AssertKeys(run, "1", "ncq_error_tfes");
        AssertKeys(run, "0", "ncq_error_log", "ncq_error_log_nq");
        Assert.Equal("2", run.Results["ncq_error_log_tag"]);
        Assert.True((Convert.ToInt32(run.Results["ncq_error_log_status"], 16) & 1) == 1, run.ToString());   // ERR
        Assert.NotEqual("0x00000000", run.Results["ncq_error_log_error"]);
        AssertImage(File.ReadAllBytes(disk), 8, 512);
    }

    /// <summary>The benchmark's mode: random 4 KiB NCQ reads with 32 tags kept busy, each tag issued again as soon
    /// as its PxSACT bit clears, so tags are reused many times while others are in flight.</summary>
    [SkippableFact]
    public void BenchmarkMode_RefillsThirtyTwoNcqTagsAsTheyComplete_AndEveryReadCompletes()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string disk = NewRawImage("bench.img", 32L << 20);
        var run = RunAhci("bench=2 qd=32 n=3000", "-s", $"4,ahci-hd,{disk}");
        Assert.True(run.Done, run.ToString());
        Assert.Equal("3000", run.Results["bench_done"]);
    }

    /// <summary>The cross-check against an AHCI HBA nobody here wrote: QEMU's ich9-ahci with ide-hd and ide-cd.</summary>
    [SkippableTheory]
    [InlineData("")]
    [InlineData("irq=1 ncq=32")]
    public void SameGuestUnderQemu_ReportsTheSameResults_AndWritesTheSameBytes(string options)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        Skip.If(FindOnPath("qemu-system-x86_64") == null, "qemu-system-x86_64 is absent (scripts/setup-debian.sh installs it): no cross-check");
        string ours = NewRawImage("ours.img"), theirs = NewRawImage("qemu.img"), iso = NewIso();
        var qemu = EngineProcess.RunProgram("qemu-system-x86_64", ["-enable-kvm", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
            "-serial", "stdio", "-kernel", EngineProcess.Guest("ahci"), "-append", options,
            "-device", "ahci,id=ahci",
            // discard=unmap: TRIM punches a hole in the image, as ours does
            "-drive", $"file={theirs},format=raw,if=none,id=d0,discard=unmap", "-device", "ide-hd,drive=d0,bus=ahci.0",
            "-drive", $"file={iso},format=raw,if=none,id=c0,media=cdrom,readonly=on", "-device", "ide-cd,drive=c0,bus=ahci.1"], timeoutSeconds: 120);
        Assert.True(qemu.Done, qemu.ToString());
        var run = RunAhci(options, "-s", $"4,ahci,hd:{ours},cd:{iso}");
        Assert.True(run.Done, run.ToString());
        // Not compared: identity strings, AHCI version, the initial unit attention (QEMU has none at power-on),
        // READ LOG EXT (QEMU aborts it) and how many NCQ tags were still outstanding when the guest looked (timing).
        string[] differ = ["pci_id", "version", "cap_64bit", "disk_model", "disk_serial", "cd_model", "cd_first_sense", "cd_tur_tries",
            "read_log_ncq", "read_log_ncq_byte0", "ncq_write_max_outstanding", "ncq_read_max_outstanding"];
        var keys = qemu.Results.Keys.Except(differ).ToList();
        Assert.True(keys.Count > 60, qemu.ToString());
        foreach (var key in keys)
            Assert.True(run.Results.TryGetValue(key, out var v) && v == qemu.Results[key],
                $"{key}: ours {(run.Results.TryGetValue(key, out var x) ? x : "(missing)")}, QEMU {qemu.Results[key]}\n{run}\n{qemu}");
        Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
    }

    private static string? FindOnPath(string program) => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private JsonElement Ask(string command)
    {
        using var c = new ControlTestClient(Socket);
        return c.Ask(command).Clone();
    }

    private static JsonElement OnlyDrive(JsonElement reply)
    {
        Assert.True(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        var drive = Assert.Single(reply.GetProperty("drives").EnumerateArray());
        Assert.Equal("0:5:0/0", drive.GetProperty("drive").GetString());
        return drive;
    }

    /// <summary>The guest polls TEST UNIT READY and GET EVENT STATUS NOTIFICATION while the host ejects the disc and
    /// inserts another through the control API: it sees NOT READY / MEDIUM NOT PRESENT (02/3A), then the unit
    /// attention MEDIUM MAY HAVE CHANGED (06/28), then reads the new disc's volume id.</summary>
    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void MediaChange_ThroughTheControlApi_WhileTheGuestPolls_GivesNoMediumThenUnitAttentionThenTheNewVolume(bool loaded)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string first = NewIso(), second = NewIso("other.iso", "OTHER_DISC", "Second disc\n");
        using var p = StartGuest("ahci", "watch=1 watchms=60000", "-s", loaded ? $"5,ahci-cd,{first}" : "5,ahci-cd");
        p.ReadUntil("XHYVE-TEST watch_started=1", TimeSpan.FromSeconds(60));
        var listed = OnlyDrive(Ask("media"));
        if (loaded)
        {
            Assert.Equal(first, listed.GetProperty("medium").GetString());
            Assert.Contains($"XHYVE-TEST cd_volume_id={VolumeId}", p.Output);
            Assert.Equal(JsonValueKind.Null, OnlyDrive(Ask("media 0:5:0 eject")).GetProperty("medium").ValueKind);
        }
        else
        {
            Assert.Equal(JsonValueKind.Null, listed.GetProperty("medium").ValueKind);
        }
        p.ReadUntil("XHYVE-TEST watch_sense=0x00023a00", TimeSpan.FromSeconds(30));
        Assert.Equal(second, OnlyDrive(Ask($"media 0:5:0 insert {second}")).GetProperty("medium").GetString());
        string seen = p.ReadUntil("XHYVE-TEST watch_volume=OTHER_DISC", TimeSpan.FromSeconds(30));
        Assert.Contains("XHYVE-TEST watch_sense=0x00062800", seen);   // the unit attention comes before the new medium reads
        Assert.Contains("XHYVE-TEST watch_event=2", seen);            // GESN: new media
        p.ReadUntil("XHYVE-TEST done", TimeSpan.FromSeconds(30));
        Assert.True(p.WaitForExit(10_000));
        Assert.Contains("XHYVE-TEST watch_timed_out=0", p.Output);
    }

    [SkippableFact]
    public void MediaChange_SurvivesAGuestReset_AndConfigShowsTheCurrentMedium()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string first = NewIso(), second = NewIso("other.iso", "OTHER_DISC", "Second disc\n");
        using var p = StartGuest("ahci", "watch=1 watchms=60000", "-s", $"5,ahci-cd,{first}", "--on-reset", "restart");
        p.ReadUntil("XHYVE-TEST watch_started=1", TimeSpan.FromSeconds(60));
        OnlyDrive(Ask("media 0:5:0 eject"));
        p.ReadUntil("XHYVE-TEST watch_sense=0x00023a00", TimeSpan.FromSeconds(30));
        OnlyDrive(Ask($"media 0:5:0 insert {second}"));
        p.ReadUntil("XHYVE-TEST done", TimeSpan.FromSeconds(30));
        // The guest reset; the machine built again keeps the disc inserted last.
        p.ReadUntil("XHYVE-TEST cd_volume_id=OTHER_DISC", TimeSpan.FromSeconds(60));
        Assert.Equal(second, OnlyDrive(Ask("media")).GetProperty("medium").GetString());
        var arguments = Ask("config").GetProperty("arguments").EnumerateArray().Select(a => a.GetString()!).ToList();
        Assert.Contains(arguments, a => a.Contains("ahci-cd") && a.Contains(second));
        // The controller's counters are in "counters": the CD reads of this boot are counted.
        var ahci = Ask("counters").GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("device").GetString() == "ahci 0:5:0");
        Assert.True(ahci.GetProperty("reads").GetInt64() > 0 && ahci.GetProperty("read_bytes").GetInt64() >= 2048, ahci.ToString());
        Ask("stop");
        Assert.True(p.WaitForExit(10_000));
    }
}
