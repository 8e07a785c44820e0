using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Virtio.Block;
using Xhyve.Vmm.Devices.Virtio.Queue;

namespace Xhyve.Fuzz;

/// <summary>
/// The seed corpus (tests/Xhyve.Fuzz/corpus/TARGET/NAME): small valid inputs, built here so their layout is
/// explained in code. Regenerate with `Xhyve.Fuzz seeds tests/Xhyve.Fuzz/corpus` after changing a target's
/// input format.
/// </summary>
internal static class Seeds
{
    public static void Write(string folder)
    {
        foreach (var (target, name, bytes) in All())
        {
            var dir = Path.Combine(folder, target);
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, name), bytes);
        }
    }

    private static IEnumerable<(string Target, string Name, byte[] Bytes)> All()
    {
        yield return ("queue", "two-chains", QueueSeed(flags: 0, indirect: false));
        yield return ("queue", "indirect-eventidx", QueueSeed(flags: 3, indirect: true));
        yield return ("blk", "read-write-flush", BlockSeed(sector4k: false));
        yield return ("blk", "getid-discard-4k", BlockSeed(sector4k: true));
        yield return ("net", "tx-ctrl-rx", NetSeed(options: 0x11, tapHeader: false));
        yield return ("net", "tap-offloads-legacy", NetSeed(options: 0x0E, tapHeader: true));
        yield return ("pci", "driver-init", PciSeed());
        yield return ("ahci", "identify-read-write-dma-ext", AhciDiskSeed());
        yield return ("ahci", "ncq-burst-read-log", AhciNcqSeed());
        yield return ("ahci", "atapi-packet-read10", AhciAtapiSeed());
        yield return ("atapi", "read10-read12-after-attention", AtapiReadSeed());
        yield return ("atapi", "inquiry-toc-config-events", AtapiStateSeed());
        yield return ("atapi", "read10-long-prdt", AtapiLongPrdtSeed());
        yield return ("lut", "sparse-3-of-8", LutSeed(split: 0, sparse: true));
        yield return ("lut", "split-sparse", LutSeed(split: 4, sparse: true));
        yield return ("lut", "split-raw", LutSeed(split: 4, sparse: false));
        yield return ("bzimage", "gzip-payload", BzImageSeed(Gzip(Elf(is64: true, 0x100000, [0xF4, 0xEB, 0xFD]))));
        yield return ("bzimage", "raw-payload", BzImageSeed([0xF4, 0xEB, 0xFD, 0x90]));
        // The kernel build's other compressors, through the host's tools (as the kernel payload tests use them).
        foreach (var (tool, arguments) in new[] { ("xz", "--check=crc32 -c"), ("lz4", "-l -9 -c"), ("zstd", "-19 -c") })
            if (Compress(tool, arguments, Elf(is64: true, 0x100000, [0xF4, 0xEB, 0xFD])) is { } payload)
                yield return ("bzimage", $"{tool}-payload", BzImageSeed(payload));
        yield return ("elf", "elf64", Elf(is64: true, 0x100000, [0xF4, 0xEB, 0xFD]));
        yield return ("elf", "multiboot-elf32", Elf(is64: false, 0x100000, [.. MultibootHeader(3), 0xF4, 0xEB, 0xFD]));
        yield return ("elf", "multiboot-aout", MultibootAout());
        yield return ("cmdline", "kexec-virtio", Argv("-A", "-c", "2", "-m", "512M", "-s", "0:0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-s", "2,virtio-blk,/dev/null,sectorsize=512", "-s", "3,virtio-rnd", "-U", "8b3c6e3a-0d4f-4a6b-9a56-1c3e1f3a7b21",
            "-f", "kexec,/dev/null,/dev/null,earlyprintk=serial console=ttyS0", "--name", "vm1"));
        yield return ("cmdline", "multiboot", Argv("-m", "64M", "-f", "multiboot,/dev/null,/dev/null;mod1:/dev/null,console=com1", "-s", "31,lpc", "-l", "com1,log=/tmp/x.log"));
        yield return ("cmdline", "sparse-disk", Argv("-s", "4,virtio-blk,/tmp/d.img,size=1G,split=256M,sparse,ro", "-p", "0:0", "-W", "-x", "-f", "kexec,/dev/null"));
        yield return ("control", "commands", [7, .. "state\nconfig\ncounters\npause\nresume\nhelp\nconsole history\nstop\n"u8]);
        yield return ("control", "errors", [0, .. "  state extra\nbogus\n\nconsole x\npowerbutton\n"u8]);
    }

    // ---- virtio rings in the "queue" input: header then guest RAM from address 0 ----

    private const uint Desc = 0x100, Avail = 0x200, Used = 0x300, Buffers = 0x1000;

    private static byte[] QueueHeader(int sizeLog2, byte flags, int capacity)
    {
        var h = new byte[15];
        h[0] = (byte)sizeLog2;
        h[1] = flags;
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(2), Desc);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(6), Avail);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(10), Used);
        h[14] = (byte)(capacity - 1);
        return h;
    }

    private static void Descriptor(byte[] ram, uint table, int index, ulong addr, uint len, ushort flags, ushort next)
    {
        var d = ram.AsSpan((int)table + 16 * index, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
    }

    private static void Publish(byte[] ram, params ushort[] heads)
    {
        for (int i = 0; i < heads.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(ram.AsSpan((int)Avail + 4 + 2 * i), heads[i]);
        BinaryPrimitives.WriteUInt16LittleEndian(ram.AsSpan((int)Avail + 2), (ushort)heads.Length);
    }

    private static byte[] QueueSeed(byte flags, bool indirect)
    {
        var ram = new byte[0x1200];
        Descriptor(ram, Desc, 0, Buffers, 16, SplitQueue.DescNext, 1);
        Descriptor(ram, Desc, 1, Buffers + 0x100, 64, SplitQueue.DescWrite, 0);
        if (indirect)
        {
            Descriptor(ram, Desc, 2, Buffers + 0x180, 32, SplitQueue.DescIndirect, 0);
            Descriptor(ram, Buffers + 0x180, 0, Buffers, 8, SplitQueue.DescNext, 1);
            Descriptor(ram, Buffers + 0x180, 1, Buffers + 0x40, 8, SplitQueue.DescWrite, 0);
        }
        else Descriptor(ram, Desc, 2, Buffers + 0x40, 8, SplitQueue.DescWrite, 0);
        Publish(ram, 0, 2);
        return [.. QueueHeader(3, flags, 16), .. ram];
    }

    private static byte[] BlockSeed(bool sector4k)
    {
        // Three requests: header (readable), data, status (writable), each chain in its own descriptors.
        var ram = new byte[0x3000];
        int sector = sector4k ? 4096 : 512;
        void Header(int at, uint type, ulong lba)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(ram.AsSpan(at), type);
            BinaryPrimitives.WriteUInt64LittleEndian(ram.AsSpan(at + 8), lba);
        }
        uint[] types = sector4k ? [VirtioBlock.TypeGetId, VirtioBlock.TypeDiscard, VirtioBlock.TypeIn] : [VirtioBlock.TypeOut, VirtioBlock.TypeIn, VirtioBlock.TypeFlush];
        for (int r = 0; r < 3; r++)
        {
            int header = 0x800 + 0x20 * r, status = 0x900 + r, data = 0x1000 + 0x1000 * r;
            Header(header, types[r], (ulong)(r * sector / 512));
            int d = 3 * r;
            Descriptor(ram, Desc, d, (ulong)header, 16, SplitQueue.DescNext, (ushort)(d + 1));
            bool deviceWrites = types[r] is VirtioBlock.TypeIn or VirtioBlock.TypeGetId;
            uint length = types[r] == VirtioBlock.TypeGetId ? 20u : types[r] == VirtioBlock.TypeDiscard ? 16u : (uint)Math.Min(sector, 0x1000);
            if (types[r] == VirtioBlock.TypeDiscard)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(ram.AsSpan(data), 8);       // sector
                BinaryPrimitives.WriteUInt32LittleEndian(ram.AsSpan(data + 8), 8);   // count
            }
            if (types[r] == VirtioBlock.TypeFlush)
                Descriptor(ram, Desc, d + 1, (ulong)status, 1, SplitQueue.DescWrite, 0);
            else
            {
                Descriptor(ram, Desc, d + 1, (ulong)data, length, (ushort)(SplitQueue.DescNext | (deviceWrites ? SplitQueue.DescWrite : 0)), (ushort)(d + 2));
                Descriptor(ram, Desc, d + 2, (ulong)status, 1, SplitQueue.DescWrite, 0);
            }
        }
        Publish(ram, 0, 3, 6);
        byte options = (byte)(sector4k ? 1 : 0);
        return [options, .. QueueHeader(4, 0, 64), .. ram];
    }

    private static byte[] NetSeed(byte options, bool tapHeader)
    {
        // The same ring is read as the send, control and receive queue: a send chain (12-byte header, then a
        // 60-byte frame in two buffers), a control command (CTRL_RX promiscuous off: class, command, data; ack),
        // and a 2 KiB writable buffer for a received frame.
        var ram = new byte[0x2000];
        Descriptor(ram, Desc, 0, Buffers, 12, SplitQueue.DescNext, 1);
        Descriptor(ram, Desc, 1, Buffers + 0x20, 30, SplitQueue.DescNext, 2);
        Descriptor(ram, Desc, 2, Buffers + 0x40, 30, 0, 0);
        ram[Buffers + 0x20] = 0xFF;   // a broadcast destination
        Descriptor(ram, Desc, 3, Buffers + 0x100, 3, SplitQueue.DescNext, 4);
        ram[Buffers + 0x102] = 0;     // class 0 (RX), command 0 (PROMISC), off
        Descriptor(ram, Desc, 4, Buffers + 0x110, 1, SplitQueue.DescWrite, 0);
        Descriptor(ram, Desc, 5, Buffers + 0x800, 0x800, SplitQueue.DescWrite, 0);
        Publish(ram, 0, 3, 5);
        byte[] frame = new byte[16];
        if (tapHeader) frame[0] = 0;   // a TAP header with no offload, then the frame
        else { frame.AsSpan(0, 6).Fill(0xFF); }
        return [options, (byte)(60 + (tapHeader ? 12 : 0)), 0, .. frame, .. QueueHeader(4, 0, 64), .. ram];
    }

    // ---- PCI: [kind<<4 | function<<2 | width][offset u16][value] ----

    private static byte[] PciSeed()
    {
        var s = new List<byte> { 0 };
        void Op(int kind, int widthLog2, ushort offset, ulong value, bool set = false)
        {
            s.Add((byte)(kind << 4 | (set ? 8 : 0) | widthLog2));
            s.Add((byte)offset); s.Add((byte)(offset >> 8));
            for (int i = 0; i < (widthLog2 == 3 ? 8 : 4); i++) s.Add((byte)(value >> (8 * i)));
        }
        Op(2, 2, 0x00, 0);                      // vendor/device
        Op(0, 2, 0x10, 0xFFFF_FFFF);            // size BAR 0, then place it
        Op(2, 2, 0x10, 0);
        Op(0, 2, 0x10, 0xC000);
        Op(0, 2, 0x18, 0xE000_0000);            // BAR 2 (modern)
        Op(0, 2, 0x14, 0xE000_8000);            // BAR 1 (MSI-X)
        Op(0, 1, 0x04, 0x0007);                 // I/O, memory, bus master
        Op(2, 0, 0x34, 0);                      // capabilities pointer
        Op(0, 1, 0x42, 0xC000);                 // MSI-X control at the first capability? (the fuzzer finds the real one)
        Op(8, 0, 0x14, 0);                      // reset
        Op(8, 0, 0x14, 3);                      // ACKNOWLEDGE | DRIVER
        Op(8, 2, 0x08, 1); Op(8, 2, 0x0C, 1);   // VERSION_1
        Op(8, 0, 0x14, 11);                     // FEATURES_OK
        Op(8, 1, 0x16, 0); Op(8, 1, 0x18, 16);
        Op(8, 3, 0x20, 0x1000); Op(8, 3, 0x28, 0x2000); Op(8, 3, 0x30, 0x3000);
        Op(8, 1, 0x1C, 1);
        Op(8, 0, 0x14, 15);                     // DRIVER_OK
        Op(8, 1, 0x3000, 0);                    // notify queue 0
        Op(9, 0, 0x1000, 0);                    // ISR
        Op(14, 2, 0, 0xE000_0014, set: false);  // common config through the MMIO bus
        Op(12, 2, 0x00, 0xFEE0_0000); Op(12, 2, 0x08, 0x41); Op(12, 2, 0x0C, 0);
        Op(3, 2, 0, 0x8000_0800);               // 0xCF8: bus 0 slot 1 function 0
        Op(4, 2, 4, 0);                         // 0xCFC
        Op(15, 0, 0xC012, 0, set: true);        // legacy status through port I/O
        Op(8, 0, 0x14, 0);                      // reset again
        return [.. s];
    }

    // ---- AHCI: [options][record count][records: op, offset u16, value][guest RAM from 0] (AhciTarget) ----

    private const uint AhciData = 0x4000;

    private static ulong AhciClb(int port) => (ulong)port * 0x400;
    private static ulong AhciFb(int port) => 0x800 + (ulong)port * 0x100;
    private static ulong AhciTable(int port, int slot) => 0x1000 + (ulong)port * 0x1000 + (ulong)slot * 0x100;

    /// <summary>Builds the records and the guest RAM of one "ahci" input.</summary>
    private sealed class AhciSeedBuilder(byte options)
    {
        private readonly List<byte> _records = [];
        private int _count;
        public readonly byte[] Ram = new byte[0x3000];

        private void Record(int kind, int widthLog2, ushort offset, ulong value, int evt = 0)
        {
            _records.Add((byte)(evt << 4 | kind << 2 | widthLog2));
            _records.Add((byte)offset); _records.Add((byte)(offset >> 8));
            for (int i = 0; i < (widthLog2 == 3 ? 8 : 4); i++) _records.Add((byte)(value >> (8 * i)));
            _count++;
        }

        public void Write(int offset, uint value) => Record(0, 2, (ushort)offset, value);
        public void Read(int offset) => Record(1, 2, (ushort)offset, 0);
        public void PortWrite(int port, int register, uint value) => Write(AhciRegisters.PortBase + port * AhciRegisters.PortSize + register, value);
        public void PortRead(int port, int register) => Read(AhciRegisters.PortBase + port * AhciRegisters.PortSize + register);
        public void Settle() => Record(2, 2, 0, 0);
        public void InsertDisc(int sectors) => Record(2, 2, 0, (uint)sectors, evt: 1);

        /// <summary>What a driver does: list and FIS area, clear errors, FRE then ST, interrupts on.</summary>
        public void StartPort(int port)
        {
            PortWrite(port, AhciRegisters.PxClb, (uint)AhciClb(port));
            PortWrite(port, AhciRegisters.PxFb, (uint)AhciFb(port));
            PortWrite(port, AhciRegisters.PxSerr, 0xFFFF_FFFF);
            PortWrite(port, AhciRegisters.PxIs, 0xFFFF_FFFF);
            PortWrite(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
            PortWrite(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
            PortWrite(port, AhciRegisters.PxIe, AhciRegisters.IsDefined);
            Write(AhciRegisters.Ghc, AhciRegisters.GhcIe);
        }

        /// <summary>Linux's error handling after a failed command: ST off, ST on, clear the status.</summary>
        public void RestartPort(int port)
        {
            PortWrite(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
            PortWrite(port, AhciRegisters.PxSerr, 0xFFFF_FFFF);
            PortWrite(port, AhciRegisters.PxIs, 0xFFFF_FFFF);
            PortWrite(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
        }

        /// <summary>Slot <paramref name="slot"/>'s header and table: a Register H2D FIS, the packet, PRDT entries of (address, bytes).</summary>
        public void Command(int port, int slot, byte command, ulong lba = 0, ushort count = 0, ushort features = 0, bool write = false,
            byte[]? packet = null, bool c = true, byte control = 0, params (uint Address, uint Bytes)[] prdt)
        {
            ulong table = AhciTable(port, slot);
            var header = Ram.AsSpan((int)AhciClb(port) + slot * AhciRegisters.HeaderSize, AhciRegisters.HeaderSize);
            BinaryPrimitives.WriteUInt32LittleEndian(header, 5u | (write ? AhciRegisters.HeaderWrite : 0) | (packet != null ? AhciRegisters.HeaderAtapi : 0) | ((uint)prdt.Length << 16));
            BinaryPrimitives.WriteUInt32LittleEndian(header[8..], (uint)table);
            var fis = Ram.AsSpan((int)table, 20);
            fis[0] = AhciRegisters.FisRegH2D;
            fis[1] = c ? (byte)0x80 : (byte)0;   // C clear: a device control FIS (software reset)
            fis[2] = command;
            fis[15] = control;
            fis[3] = (byte)features; fis[11] = (byte)(features >> 8);
            fis[4] = (byte)lba; fis[5] = (byte)(lba >> 8); fis[6] = (byte)(lba >> 16);
            fis[8] = (byte)(lba >> 24); fis[9] = (byte)(lba >> 32); fis[10] = (byte)(lba >> 40);
            fis[7] = 0x40;
            fis[12] = (byte)count; fis[13] = (byte)(count >> 8);
            packet?.CopyTo(Ram.AsSpan((int)table + AhciRegisters.TableAcmd));
            for (int i = 0; i < prdt.Length; i++)
            {
                var e = Ram.AsSpan((int)table + AhciRegisters.TablePrdt + i * AhciRegisters.PrdtEntrySize, AhciRegisters.PrdtEntrySize);
                BinaryPrimitives.WriteUInt32LittleEndian(e, prdt[i].Address);
                BinaryPrimitives.WriteUInt32LittleEndian(e[12..], prdt[i].Bytes - 1);
            }
        }

        public void Issue(int port, uint slots) => PortWrite(port, AhciRegisters.PxCi, slots);

        public byte[] Bytes()
        {
            int end = Ram.Length;
            while (end > 0 && Ram[end - 1] == 0) end--;
            return [options, (byte)_count, .. _records, .. Ram.AsSpan(0, end)];
        }
    }

    private static byte[] AhciDiskSeed()
    {
        var b = new AhciSeedBuilder(0);
        b.Read(AhciRegisters.Cap);
        b.Read(AhciRegisters.Pi);
        b.StartPort(0);
        b.Command(0, 0, AtaDisk.IdentifyDevice, prdt: (AhciData, 512));
        b.Command(0, 1, AtaDisk.WriteDmaExt, lba: 8, count: 4, write: true, prdt: [(AhciData + 0x1000, 1024), (AhciData + 0x2000, 1024)]);
        b.Command(0, 2, AtaDisk.ReadDmaExt, lba: 8, count: 4, prdt: [(AhciData + 0x3000, 2048)]);
        b.Command(0, 3, AtaDisk.FlushCacheExt);
        b.Issue(0, 1);
        b.Settle();
        b.PortRead(0, AhciRegisters.PxIs);
        b.PortWrite(0, AhciRegisters.PxIs, 0xFFFF_FFFF);
        b.Write(AhciRegisters.Is, 1);
        b.Issue(0, 2);
        b.Settle();
        b.Issue(0, 4 | 8);
        b.Settle();
        b.PortRead(0, AhciRegisters.PxTfd);
        // Linux's softreset: a device control FIS with SRST, then one without; the signature comes back.
        b.Command(0, 5, 0, c: false, control: 0x04);
        b.Command(0, 6, 0, c: false);
        b.Issue(0, 1 << 5);
        b.Issue(0, 1 << 6);
        b.Settle();
        b.PortRead(0, AhciRegisters.PxSig);
        // An HBA reset (GHC.HR) with the port running, then the driver starts again and identifies the disk.
        b.Write(AhciRegisters.Ghc, AhciRegisters.GhcHr);
        b.Read(AhciRegisters.Ghc);
        b.StartPort(0);
        b.Issue(0, 1);
        b.Settle();
        return b.Bytes();
    }

    private static byte[] AhciNcqSeed()
    {
        var b = new AhciSeedBuilder(8);   // with MSI
        b.StartPort(0);
        for (int tag = 0; tag < 4; tag++)
        {
            bool write = tag % 2 == 0;
            // FPDMA QUEUED: sector count in FEATURES, the tag in COUNT bits 7:3.
            b.Command(0, tag, write ? AtaDisk.WriteFpdmaQueued : AtaDisk.ReadFpdmaQueued, lba: (ulong)(tag * 8), count: (ushort)(tag << 3), features: 2,
                write: write, prdt: (AhciData + (uint)tag * 0x400, 1024));
        }
        b.Command(0, 4, AtaDisk.ReadLogExt, lba: AtaDisk.LogNcqError, count: 1, prdt: (AhciData + 0x2000, 512));
        b.PortWrite(0, AhciRegisters.PxSact, 0xF);
        b.Issue(0, 0xF);
        b.Settle();
        b.PortRead(0, AhciRegisters.PxSact);
        b.Issue(0, 0x10);
        b.Settle();
        // A COMRESET (PxSCTL.DET 1, then 0): ST drops, the link comes back; the driver restarts and queues again.
        b.PortWrite(0, AhciRegisters.PxSctl, 0x301);
        b.PortWrite(0, AhciRegisters.PxSctl, 0x300);
        b.PortRead(0, AhciRegisters.PxSsts);
        b.PortWrite(0, AhciRegisters.PxSerr, 0xFFFF_FFFF);
        b.PortWrite(0, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
        b.PortWrite(0, AhciRegisters.PxSact, 0x3);
        b.Issue(0, 0x3);
        b.Settle();
        return b.Bytes();
    }

    private static byte[] Cdb(params byte[] bytes)
    {
        var cdb = new byte[16];
        bytes.CopyTo(cdb, 0);
        return cdb;
    }

    private static byte[] AhciAtapiSeed()
    {
        var b = new AhciSeedBuilder(0);
        b.StartPort(1);
        const byte packet = 0xA0;
        b.Command(1, 0, packet, packet: Cdb(0x00), prdt: []);                                       // TEST UNIT READY: the power-on unit attention
        b.Command(1, 1, packet, packet: Cdb(0x03, 0, 0, 0, 18), prdt: (AhciData, 18));        // REQUEST SENSE
        b.Command(1, 2, packet, features: 1, packet: Cdb(0x28, 0, 0, 0, 0, 3, 0, 0, 2), prdt: [(AhciData + 0x1000, 2048), (AhciData + 0x2000, 2048)]);   // READ(10) LBA 3, 2 sectors
        b.Command(1, 3, 0xA1, prdt: (AhciData + 0x3000, 512));   // IDENTIFY PACKET DEVICE
        b.Issue(1, 1);
        b.Settle();
        b.RestartPort(1);
        b.Issue(1, 2);
        b.Settle();
        b.Issue(1, 4);
        b.Settle();
        b.InsertDisc(4);
        b.Issue(1, 8);
        b.Settle();
        return b.Bytes();
    }

    // ---- ATAPI: [first disc][records] (AtapiTarget) ----

    private static void AtapiPacket(List<byte> s, byte[] cdb, params ushort[] entryBytes)
    {
        s.Add(0);
        s.AddRange(Cdb(cdb));
        AtapiPrdt(s, entryBytes);
    }

    private static void AtapiPrdt(List<byte> s, ushort[] entryBytes)
    {
        s.Add((byte)entryBytes.Length);
        foreach (var n in entryBytes) { int code = n / 2 - 1; s.Add((byte)code); s.Add((byte)(code >> 8)); }
    }

    private static byte[] AtapiReadSeed()
    {
        var s = new List<byte> { 16 };
        AtapiPacket(s, [0x00]);                                             // TEST UNIT READY: unit attention
        AtapiPacket(s, [0x03, 0, 0, 0, 18], 18);                            // REQUEST SENSE
        AtapiPacket(s, [0x25], 8);                                          // READ CAPACITY
        AtapiPacket(s, [0x28, 0, 0, 0, 0, 2, 0, 0, 3], 2048, 1024, 4096);   // READ(10) LBA 2, 3 sectors, a longer PRDT
        AtapiPacket(s, [0xA8, 0, 0, 0, 0, 15, 0, 0, 0, 1], 2048);           // READ(12) the last sector
        AtapiPacket(s, [0x28, 0, 0, 0, 0, 16, 0, 0, 1], 2048);              // READ(10) past the end: LBA out of range
        return [.. s];
    }

    private static byte[] AtapiStateSeed()
    {
        var s = new List<byte> { 40 };
        AtapiPacket(s, [0x12, 0, 0, 0, 36], 36);                            // INQUIRY (unit attention does not apply)
        AtapiPacket(s, [0x12, 1, 0x83, 0, 64], 64);                         // INQUIRY device identification
        AtapiPacket(s, [0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8], 8);               // GET EVENT STATUS NOTIFICATION, media class
        AtapiPacket(s, [0x00]);                                             // the unit attention
        AtapiPacket(s, [0x43, 2, 0, 0, 0, 0, 0, 0, 20], 20);                // READ TOC, MSF
        AtapiPacket(s, [0x43, 0, 1, 0, 0, 0, 0, 0, 12], 12);                // READ TOC, session information
        AtapiPacket(s, [0x46, 0, 0, 0, 0, 0, 0, 0, 64], 64);                // GET CONFIGURATION
        AtapiPacket(s, [0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 64], 64);             // MODE SENSE(10) all pages
        AtapiPacket(s, [0x51, 0, 0, 0, 0, 0, 0, 0, 34], 34);                // READ DISC INFORMATION
        AtapiPacket(s, [0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8], 8);               // MECHANISM STATUS
        AtapiPacket(s, [0x1E, 0, 0, 0, 1]);                                 // PREVENT MEDIUM REMOVAL
        AtapiPacket(s, [0x1B, 0, 0, 0, 2]);                                 // eject: refused while locked
        s.AddRange([5, 0xA1, 0, 0, 0, 0, 1, 255, 0]);                       // IDENTIFY PACKET DEVICE, 512 bytes
        s.AddRange([5, 0xEF, 3, 0, 0x44, 0, 0]);                            // SET FEATURES: UDMA 4
        s.AddRange([5, 0xEC, 0, 0, 0, 0, 0]);                               // IDENTIFY DEVICE: aborted with the signature
        s.Add(7);                                                           // host eject
        AtapiPacket(s, [0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8], 8);               // media removal event
        s.AddRange([6, 3]);                                                 // host insert (3 sectors)
        AtapiPacket(s, [0x00]);                                             // NOT READY TO READY CHANGE
        AtapiPacket(s, [0x28, 0, 0, 0, 0, 0, 0, 0, 3], 6144);               // READ(10) the new disc
        s.Add(7 | 1 << 3);                                                  // reset
        AtapiPacket(s, [0x03, 0, 0, 0, 18], 18);                            // REQUEST SENSE: POWER ON, RESET
        return [.. s];
    }

    private static byte[] AtapiLongPrdtSeed()
    {
        var s = new List<byte> { 8 };
        AtapiPacket(s, [0x03, 0, 0, 0, 18], 18);                            // REQUEST SENSE takes the unit attention
        // READ(10) of 2 sectors over 300 entries of 16 bytes (op bit 7 adds 256 to the count): longer than the
        // drive's trimming scratch, which has to grow.
        s.Add(0x80);
        s.AddRange(Cdb(0x28, 0, 0, 0, 0, 1, 0, 0, 2));
        s.Add(300 - 256);
        for (int i = 0; i < 300; i++) { s.Add(7); s.Add(0); }
        return [.. s];
    }

    // ---- sparse LUT ----

    private static byte[] LutSeed(int split, bool sparse)
    {
        const int sectors = 8;
        var s = new List<byte> { 0, sectors - 1, (byte)split, (byte)(sparse ? 0 : 2) };
        int segments = split == 0 ? 1 : (sectors + split - 1) / split;
        var stored = new int[segments];
        var lut = new uint[sectors];
        Array.Fill(lut, SplitSparseLutUnallocated);
        // Sectors 1, 2 and 6 written: each gets the next free place in its segment.
        foreach (int sector in new[] { 1, 2, 6 })
        {
            int seg = split == 0 ? 0 : sector / split;
            lut[sector] = (uint)stored[seg]++;
        }
        for (int i = 0; i < segments; i++) { s.Add((byte)(sparse ? stored[i] : split == 0 ? sectors : split)); s.Add(0); }
        if (sparse) foreach (var e in lut) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, e); s.AddRange(b); }
        return [.. s];
    }

    private const uint SplitSparseLutUnallocated = 0xFFFF_FFFF;

    // ---- boot images ----

    private static byte[] Elf(bool is64, uint paddr, byte[] payload)
    {
        int ehsize = is64 ? 64 : 52, phsize = is64 ? 56 : 32, dataOffset = ehsize + phsize;
        var f = new byte[dataOffset + payload.Length];
        var s = f.AsSpan();
        "\x7F"u8.CopyTo(s); "ELF"u8.CopyTo(s[1..]);
        s[4] = (byte)(is64 ? 2 : 1); s[5] = 1; s[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x10..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x12..], (ushort)(is64 ? 62 : 3));
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x14..], 1);
        var ph = s[ehsize..];
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);   // PT_LOAD
        if (is64)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(s[0x18..], paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(s[0x20..], (ulong)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x36..], (ushort)phsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x38..], 1);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], (ulong)dataOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], (ulong)payload.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], (ulong)payload.Length + 0x1000);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(s[0x18..], paddr + (uint)(payload.Length - 3));
            BinaryPrimitives.WriteUInt32LittleEndian(s[0x1C..], (uint)ehsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x2A..], (ushort)phsize);
            BinaryPrimitives.WriteUInt16LittleEndian(s[0x2C..], 1);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], (uint)dataOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[12..], paddr);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[16..], (uint)payload.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[20..], (uint)payload.Length + 0x1000);
        }
        payload.CopyTo(s[dataOffset..]);
        return f;
    }

    private static byte[] MultibootHeader(uint flags)
    {
        var h = new byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x1BAD_B002);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), unchecked(0u - 0x1BAD_B002 - flags));
        return h;
    }

    /// <summary>A raw binary with the a.out kludge: header at file offset 0 loaded at 1 MiB, entry right after it.</summary>
    private static byte[] MultibootAout()
    {
        const uint flags = 1u << 16 | 3, load = 0x100000;
        var f = new byte[48];
        MultibootHeader(flags).CopyTo(f, 0);
        var h = f.AsSpan(12);
        BinaryPrimitives.WriteUInt32LittleEndian(h, load);              // header_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], load);         // load_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], 0);            // load_end_addr: whole file
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], load + 0x2000); // bss_end_addr
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], load + 32);   // entry
        f[32] = 0xF4; f[33] = 0xEB; f[34] = 0xFD;
        return f;
    }

    /// <summary>A bzImage: one setup sector after the boot sector, boot protocol 2.15, 64-bit entry, and a
    /// payload (a compressed ELF64, or bytes no decompressor knows, which Auto boots as-is).</summary>
    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.SmallestSize)) gz.Write(data);
        return ms.ToArray();
    }

    /// <summary>The data compressed by a host tool, with the size the kernel build appends; null without the tool.</summary>
    private static byte[]? Compress(string tool, string arguments, byte[] data)
    {
        var start = new System.Diagnostics.ProcessStartInfo(tool, arguments) { RedirectStandardInput = true, RedirectStandardOutput = true };
        System.Diagnostics.Process process;
        try { process = System.Diagnostics.Process.Start(start)!; }
        catch (System.ComponentModel.Win32Exception) { Console.Error.WriteLine($"seeds: {tool} is not installed; no {tool} seed"); return null; }
        using (process)
        {
            var output = new MemoryStream();
            var reading = process.StandardOutput.BaseStream.CopyToAsync(output);
            process.StandardInput.BaseStream.Write(data);
            process.StandardInput.Close();
            reading.Wait();
            process.WaitForExit();
            var size = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(size, (uint)data.Length);
            return process.ExitCode == 0 ? [.. output.ToArray(), .. size] : null;
        }
    }

    private static byte[] BzImageSeed(byte[] payload)
    {
        const int setupSects = 1, setupBytes = (setupSects + 1) * 512;
        int pmLength = 0x200 + payload.Length;
        var f = new byte[setupBytes + pmLength];
        var s = f.AsSpan();
        s[0x1F1] = setupSects;
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x1FE..], 0xAA55);
        s[0x201] = 0x6A;                                                   // header length: ends at 0x26C
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x202..], 0x5372_6448); // "HdrS"
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x206..], 0x020F);      // protocol 2.15
        s[0x211] = 0x01;                                                   // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x22C..], 0x37FF_FFFF); // initrd_addr_max
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x230..], 0x20_0000);   // kernel_alignment
        s[0x234] = 1;                                                      // relocatable
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x236..], 0x1);         // XLF_KERNEL_64
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x238..], 2047);        // cmdline_size
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x248..], 0x200);       // payload_offset
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x24C..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(s[0x258..], 0x100_0000);  // pref_address
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x260..], 0x10_0000);   // init_size
        s[setupBytes] = 0xF4;
        payload.CopyTo(s[(setupBytes + 0x200)..]);
        return f;
    }

    private static byte[] Argv(params string[] args) => Encoding.UTF8.GetBytes(string.Join('\0', args));
}
