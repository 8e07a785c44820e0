using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Storage;

namespace Xhyve.Fuzz;

/// <summary>
/// The ATAPI CD/DVD drive on its own: commands straight to <see cref="AtapiCdrom.Execute"/> as the AHCI port hands
/// them over (decoded registers, the 16-byte command area, the PRDT as host buffers), with the host inserting and
/// ejecting discs in between. Input: the first disc's sectors (bits 0-5; bit 7: the drive starts empty), then records
/// of [op] and its operands; op bits 0-2: 0-4 PACKET with a 16-byte CDB, 5 another ATA command (command u8,
/// features u16, count u16), 6 insert a disc (sectors u8, bits 0-5), 7 (bits 3-4) eject / reset / eject and reset /
/// nothing. PACKET and ATA commands then give their PRDT: an entry count (u8, plus 256 when op bit 7 is set) and each
/// entry's length (u16: 2 to 64 KiB, even, as the port allows), laid out in native memory with guard bytes between
/// the entries. A disc is a whole number of 2048-byte sectors plus 100 bytes no read may reach.
/// A crash: any exception (also one the drive catches itself), a byte written into a guard or past the bytes the
/// completion says it moved, an error completion that moved bytes, a read returning other bytes than the disc's, and
/// a request outside a disc (or after it was ejected) reaching its backend.
/// </summary>
internal static unsafe class AtapiTarget
{
    private const int MaxRecords = 512, Guard = 16, ArenaSize = 192 << 10;
    private const byte GuardByte = 0xA5, FillByte = 0x5A;
    private static readonly byte* Arena = (byte*)NativeMemory.AlignedAlloc(ArenaSize + 4 * Guard, 64);   // once per process, like guest RAM
    private static readonly IoBuffer[] Prdt = new IoBuffer[512];
    /// <summary>The end of the guard after the last entry laid out.</summary>
    private static int _laid;

    /// <summary>The bytes of disc number <paramref name="disc"/>: each disc differs, so a read of a stale one shows.</summary>
    private static byte DiscByte(long offset, int disc) => (byte)(offset ^ (offset >> 11) ^ (disc * 37));

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        byte first = input.U8();
        var discs = new List<MemoryBackend>();
        int current = -1;   // the disc a successful read must come from: the last one inserted
        MemoryBackend Disc(int sectors)
        {
            int number = discs.Count;
            var d = new MemoryBackend((long)(sectors & 63) * AtapiCdrom.SectorSize + 100, AtapiCdrom.SectorSize, readOnly: true, fill: o => DiscByte(o, number));
            discs.Add(d);
            current = number;
            return d;
        }
        ThrownWatch.Start("Xhyve.Vmm.Devices.Ahci");
        string? thrown;
        try
        {
            using var cd = new AtapiCdrom("fuzz cd", (first & 0x80) != 0 ? null : Disc(first));
            Span<byte> packet = stackalloc byte[16];
            for (int r = 0; r < MaxRecords && input.Remaining > 0; r++)
            {
                byte op = input.U8();
                int kind = op & 7;
                if (kind <= 5)
                {
                    AtaCommand command;
                    if (kind <= 4)
                    {
                        packet.Clear();
                        input.Take(16).CopyTo(packet);
                        command = new AtaCommand(0xA0, (ushort)((op >> 3) & 1), 0, 0, 0, 0);   // features bit 0: DMA
                    }
                    else
                    {
                        packet.Clear();
                        command = new AtaCommand(input.U8(), input.U16(), 0, input.U16(), 0, 0);
                    }
                    int entries = input.U8() + ((op & 0x80) != 0 ? 256 : 0);
                    var list = Lay(ref input, entries);
                    var c = cd.Execute(command, kind <= 4 ? packet : ReadOnlySpan<byte>.Empty, list);
                    if (Program.Verbose) Console.WriteLine($"  {(kind <= 4 ? $"PACKET {packet[0]:X2}" : $"ATA {command.Command:X2}")}: status {c.Status:X2} error {c.Error:X2}, {c.TransferredBytes} bytes");
                    Check(command, packet, list, c, current >= 0 ? discs[current] : null, current);
                }
                else if (kind == 6) cd.Insert(Disc(input.U8()));
                else
                {
                    switch ((op >> 3) & 3)
                    {
                        case 0: cd.Eject(); break;
                        case 1: cd.Reset(); break;
                        case 2: cd.Eject(); cd.Reset(); break;
                    }
                }
            }
        }
        finally { thrown = ThrownWatch.Stop(); }
        if (thrown != null) throw new FuzzBugException($"an exception was thrown inside the ATAPI drive: {thrown}");
        foreach (var d in discs)
            if (d.Violation is { } violation) throw new FuzzBugException(violation);
    }

    /// <summary>The PRDT in the arena: a guard, an entry, a guard...; guards hold GuardByte, entries FillByte.
    /// Entries that do not fit are left out.</summary>
    private static ReadOnlySpan<IoBuffer> Lay(ref InputReader input, int entries)
    {
        int at = Guard, count = 0;
        for (int i = 0; i < entries; i++)
        {
            int length = ((input.U16() & 0x7FFF) + 1) * 2;
            if (at + length + Guard > ArenaSize) break;
            Prdt[count++] = new IoBuffer((nint)(Arena + at), length);
            at += length + Guard;
        }
        _laid = at + 3 * Guard;   // a trailing guard longer than the others: the arena has room for it
        new Span<byte>(Arena, _laid).Fill(GuardByte);
        foreach (var b in Prdt.AsSpan(0, count)) b.AsSpan().Fill(FillByte);
        return Prdt.AsSpan(0, count);
    }

    private static void Check(in AtaCommand command, ReadOnlySpan<byte> packet, ReadOnlySpan<IoBuffer> list, in AtaCompletion c, MemoryBackend? disc, int discNumber)
    {
        long total = ScatterList.Length(list);
        string what = command.Command == 0xA0 ? $"PACKET {Convert.ToHexString(packet[..12])}" : $"ATA command 0x{command.Command:X2}";
        if (c.TransferredBytes < 0 || c.TransferredBytes > total)
            throw new FuzzBugException($"{what}: completion says {c.TransferredBytes} bytes moved, the PRDT holds {total}");
        if (c.IsError && c.TransferredBytes != 0)
            throw new FuzzBugException($"{what}: an error completion (status {c.Status:X2}, error {c.Error:X2}) moved {c.TransferredBytes} bytes");
        // Guards: before the first entry, between entries, and after the last.
        byte* end = Arena + _laid;
        byte* at = Arena;
        foreach (var b in list)
        {
            for (byte* g = at; g < (byte*)b.Address; g++)
                if (*g != GuardByte) throw new FuzzBugException($"{what}: wrote outside its PRDT buffers (guard byte at arena offset {g - Arena})");
            at = (byte*)b.Address + (long)b.Length;
        }
        for (byte* g = at; g < end; g++)
            if (*g != GuardByte) throw new FuzzBugException($"{what}: wrote outside its PRDT buffers (arena offset {g - Arena}, past the last entry)");
        // Past what the completion reports, the buffers are untouched (the port reports that count to the guest).
        long position = 0;
        bool read = command.Command == 0xA0 && packet[0] is 0x28 or 0xA8 && !c.IsError;
        ulong lba = read ? BinaryPrimitives.ReadUInt32BigEndian(packet[2..]) : 0;
        foreach (var b in list)
        {
            var span = b.AsSpan();
            for (int i = 0; i < span.Length; i++, position++)
            {
                if (position >= c.TransferredBytes)
                {
                    if (span[i] != FillByte) throw new FuzzBugException($"{what}: wrote byte {position} of its PRDT, past the {c.TransferredBytes} bytes it reports");
                }
                else if (read)
                {
                    if (disc == null) throw new FuzzBugException($"{what}: a read succeeded with no disc inserted");
                    long offset = (long)lba * AtapiCdrom.SectorSize + position;
                    if (span[i] != DiscByte(offset, discNumber))
                        throw new FuzzBugException($"{what}: byte {position} of the read is not byte {offset} of disc {discNumber}");
                }
            }
        }
    }
}
