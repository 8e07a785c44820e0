using System.Buffers.Binary;
using System.IO.Compression;
using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>
/// Issue 16, item 2: no dead memory after boot. The engine boots a synthetic bzImage whose payload decompresses to a
/// 256 MiB vmlinux (one segment: a halt loop, then zeros, so it compresses to a few hundred KiB); while the guest
/// halts, the engine's anonymous resident memory minus the guest RAM it has touched must be a small constant, not
/// the decompressed kernel (the old loader kept it in managed arrays, twice over for gzip).
/// </summary>
public sealed class BootMemoryTests : IDisposable
{
    private const int SegmentBytes = 256 << 20;
    private const ulong GuestRamBytes = 640UL << 20;   // a size no other mapping of the engine has
    private readonly string _dir = Directory.CreateTempSubdirectory("bootmem").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [SkippableFact]
    public void AfterBootingALargePayload_TheEnginesMemoryBeyondGuestRam_DoesNotHoldTheDecompressedKernel()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string kernel = Path.Combine(_dir, "bzImage");
        File.WriteAllBytes(kernel, HaltingBzImage());
        using var engine = EngineProcess.Start(["-m", $"{GuestRamBytes >> 20}M", "-f", $"kexec,{kernel},,console=ttyS0"]);

        // The loader has written the segment once guest RAM holds it; the machine is built and the vCPU halts soon after.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        (long RssAnonKiB, long GuestKiB) sample;
        while ((sample = Sample(engine.Id)).GuestKiB < SegmentBytes >> 10)
        {
            if (engine.HasExited) Assert.Fail($"the engine exited ({engine.ExitCode}): {engine.Stderr}");
            Assert.True(DateTime.UtcNow < deadline, $"guest RAM never held the kernel: {sample}");
            Thread.Sleep(100);
        }
        Thread.Sleep(3000);
        sample = Sample(engine.Id);
        if (engine.HasExited) Assert.Fail($"the engine exited ({engine.ExitCode}): {engine.Stderr}");
        long beyondGuest = sample.RssAnonKiB - sample.GuestKiB;
        // A constant of the runtime and devices; the decompressed kernel is 256 MiB.
        Assert.True(beyondGuest < 96 << 10,
            $"RssAnon {sample.RssAnonKiB} KiB, guest RAM resident {sample.GuestKiB} KiB: {beyondGuest} KiB beyond guest RAM");
    }

    /// <summary>RssAnon of the process, and the resident part of its guest RAM mapping (the one of exactly the guest's
    /// size).</summary>
    private static (long RssAnonKiB, long GuestKiB) Sample(int pid)
    {
        long rssAnon = long.Parse(Regex.Match(File.ReadAllText($"/proc/{pid}/status"), @"RssAnon:\s+(\d+) kB").Groups[1].Value);
        long guest = 0;
        foreach (Match m in Regex.Matches(File.ReadAllText($"/proc/{pid}/smaps"), @"^Size:\s+(\d+) kB\s*\nKernelPageSize:.*\nMMUPageSize:.*\nRss:\s+(\d+) kB", RegexOptions.Multiline))
            if (long.Parse(m.Groups[1].Value) == (long)(GuestRamBytes >> 10)) guest += long.Parse(m.Groups[2].Value);
        return (rssAnon, guest);
    }

    /// <summary>A bzImage (protocol 2.15, not relocatable) whose gzip payload is an x86-64 vmlinux with one segment at
    /// 16 MiB: hlt; jmp back (interrupts are off at entry, so the vCPU sleeps), then zeros.</summary>
    private static byte[] HaltingBzImage()
    {
        const ulong load = 0x100_0000;
        const int headers = 64 + 56;
        var vmlinux = new byte[headers + SegmentBytes];
        var e = vmlinux.AsSpan();
        "\x7F"u8.CopyTo(e); "ELF"u8.CopyTo(e[1..]);
        e[4] = 2; e[5] = 1; e[6] = 1;                                                   // 64-bit, little-endian
        BinaryPrimitives.WriteUInt16LittleEndian(e[0x10..], 2);                         // executable
        BinaryPrimitives.WriteUInt16LittleEndian(e[0x12..], 62);                        // x86-64
        BinaryPrimitives.WriteUInt32LittleEndian(e[0x14..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(e[0x18..], load);                      // entry
        BinaryPrimitives.WriteUInt64LittleEndian(e[0x20..], 64);                        // program headers
        BinaryPrimitives.WriteUInt16LittleEndian(e[0x34..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(e[0x36..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(e[0x38..], 1);
        var ph = e[64..];
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);                                // PT_LOAD
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], headers);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], load | 0xFFFF_FFFF_8000_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], load);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], SegmentBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], SegmentBytes);
        e[headers] = 0xF4; e[headers + 1] = 0xEB; e[headers + 2] = 0xFD;               // hlt; jmp $-3

        using var payload = new MemoryStream();
        using (var gzip = new GZipStream(payload, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(vmlinux);
        Span<byte> size = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(size, (uint)vmlinux.Length);           // size_append
        payload.Write(size);

        const int setup = 5 * 512;
        var image = new byte[setup + payload.Length];
        var b = image.AsSpan();
        b[0x1F1] = 4;                                                                   // setup_sects
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x1FE..], 0xAA55);
        b[0x201] = 0x6A;
        "HdrS"u8.CopyTo(b[0x202..]);
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x206..], 0x020F);
        b[0x211] = 0x01;                                                                // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(b[0x22C..], 0x7FFF_FFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(b[0x230..], 0x20_0000);
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x236..], 0x1);                      // XLF_KERNEL_64
        BinaryPrimitives.WriteUInt32LittleEndian(b[0x238..], 2047);
        BinaryPrimitives.WriteUInt32LittleEndian(b[0x24C..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(b[0x258..], load);
        payload.ToArray().CopyTo(b[setup..]);
        return image;
    }
}
