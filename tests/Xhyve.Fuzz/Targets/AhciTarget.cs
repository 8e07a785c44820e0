using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Memory;

namespace Xhyve.Fuzz;

/// <summary>
/// An AHCI controller (one I/O thread) with an ATA disk on port 0 (64 KiB in memory) and an ATAPI CD/DVD drive on
/// port 1 (a small in-memory disc), driven through its ABAR the way a guest's MMIO arrives, so that the ports fetch
/// command lists, command tables and PRDTs from guest RAM the input fills.
/// Input: options (bit 0: 4096-byte disk sectors, bit 1: read-only disk, bit 2: the CD drive empty, bit 3: MSI on),
/// the number of records (u8), the records, then guest RAM (64 KiB) from address 0. A record is
/// [op][offset u16][value u32, or u64 for an 8-byte access]; op bits 0-1: width 1, 2, 4, 8; bits 2-3: 0 ABAR write,
/// 1 ABAR read, 2 host event, 3 the guest writes its RAM (at offset, while commands may run). ABAR offsets are
/// offset &amp; 0x1FF (the generic registers and both ports) unless bit 15 is set (offset &amp; 0x3FFF, past the BAR too).
/// Host events (op bits 4-5): 0 wait until the I/O thread is done with every command (see Settle), 1 insert a disc of value &amp; 63 sectors,
/// 2 eject it, 3 both.
/// A crash: any exception (on the I/O thread one takes the process down), any exception the controller or a drive
/// catches (a drive must report an error status, not throw: see <see cref="ThrownWatch"/>), anything the controller
/// logs as an unexpected drive failure, a request outside a disk or a write to a read-only one reaching the backend,
/// and an issued command left in PxCI of a running port without an error once the I/O thread is idle (a command
/// the I/O thread never finishes is a hang).
/// </summary>
internal static class AhciTarget
{
    public const int RamSize = 64 << 10, DiskSize = 64 << 10, DiscSectors = 16;
    private const int DiskPort = 0, CdPort = 1;

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        byte options = input.U8();
        int records = input.U8();
        // The records come first: skip over them to find the RAM image, then read them.
        var recordStart = input;
        for (int i = 0; i < records; i++) Skip(ref input);
        var memory = new PinnedGuestMemory(RamSize, input.Rest);
        input = recordStart;

        int sector = (options & 1) != 0 ? 4096 : 512;
        var disk = new MemoryBackend(DiskSize, sector, readOnly: (options & 2) != 0);
        var discs = new List<MemoryBackend>();
        MemoryBackend Disc(int sectors)
        {
            var d = new MemoryBackend((long)sectors * AtapiCdrom.SectorSize + 100, AtapiCdrom.SectorSize, readOnly: true, fill: o => (byte)(o ^ (o >> 11)));
            discs.Add(d);
            return d;
        }
        var log = new StringWriter();
        ThrownWatch.Start("Xhyve.Vmm.Devices.Ahci");
        string? thrown;
        try
        {
            var cd = new AtapiCdrom("fuzz cd", (options & 4) != 0 ? null : Disc(DiscSectors));
            var hba = new AhciController("ahci fuzz", [new AtaDisk("fuzz disk", disk, sector, sector), cd], memory,
                new NullMsiSink(), new NullInterruptLine(), ioThreads: 1, log: new RateLimitedLog(log, TimeSpan.Zero));
            try
            {
                if ((options & 8) != 0) EnableMsi(hba);
                var abar = hba.Bars.Single(b => b.Index == AhciController.AbarIndex).Handler;
                Span<byte> buffer = stackalloc byte[8];
                for (int i = 0; i < records; i++)
                {
                    byte op = input.U8();
                    int width = 1 << (op & 3);
                    ushort raw = input.U16();
                    ulong value = width == 8 ? input.U64() : input.U32();
                    ulong offset = (raw & 0x8000) != 0 ? raw & 0x3FFFUL : raw & 0x1FFUL;
                    var bytes = buffer[..width];
                    BinaryPrimitives.WriteUInt64LittleEndian(buffer, value);
                    switch ((op >> 2) & 3)
                    {
                        case 0: abar.Write(offset, bytes); break;
                        case 1: abar.Read(offset, bytes); break;
                        case 2:
                            switch ((op >> 4) & 3)
                            {
                                case 0: Settle(hba, abar); break;
                                case 1: cd.Insert(Disc((int)(value & 63))); break;
                                case 2: cd.Eject(); break;
                                case 3: cd.Eject(); cd.Insert(Disc((int)(value & 63))); break;
                            }
                            break;
                        case 3: memory.TryWrite(new GuestAddress(raw), bytes); break;
                    }
                }
                Settle(hba, abar);
            }
            finally
            {
                hba.Dispose();   // waits for the I/O thread
                if (Program.Verbose) Console.WriteLine($"  {string.Join(", ", hba.Counters.Select(c => $"{c.Key}={c.Value}"))}");
            }
        }
        finally { thrown = ThrownWatch.Stop(); }
        if (thrown != null) throw new FuzzBugException($"an exception was thrown inside the AHCI code: {thrown}");
        if (log.ToString() is { Length: > 0 } logged) throw new FuzzBugException($"the controller logged a drive failure: {logged}");
        foreach (var backend in discs.Prepend(disk))
            if (backend.Violation is { } violation) throw new FuzzBugException(violation);
    }

    private static void Skip(ref InputReader input)
    {
        byte op = input.U8();
        input.Take(2 + ((op & 3) == 3 ? 8 : 4));
    }

    /// <summary>MSI on, as a driver enables it through the capability (what AhciTestBed.EnableMsi does).</summary>
    private static void EnableMsi(AhciController hba)
    {
        int cap = (int)hba.Config.Read(PciConfigSpace.CapabilitiesPointer, 1);
        hba.Config.Write(cap + 4, 4, 0xFEE0_0000);
        hba.Config.Write(cap + 12, 2, 0x41);
        hba.Config.Write(cap + 2, 2, 1);
        hba.ConfigWritten(cap + 2, 2);
    }

    // Whether the I/O thread still holds a slot is internal state (AhciPort.Busy, under the controller's lock): read
    // through reflection, so that waiting for it runs no instrumented code a varying number of times (polling the
    // registers did, which made the coverage of one input differ from run to run). Missing fields fail every input.
    private static readonly System.Reflection.FieldInfo PortsField = Field(typeof(AhciController), "_ports");
    private static readonly System.Reflection.FieldInfo LockField = Field(typeof(AhciController), "_lock");
    private static readonly System.Reflection.FieldInfo BusyField = Field(PortsField.FieldType.GetElementType()!, "Busy");

    private static System.Reflection.FieldInfo Field(Type type, string name) =>
        type.GetField(name, System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic)
        ?? throw new InvalidOperationException($"the ahci harness reads {type.Name}.{name}, which is gone: update AhciTarget.Settle");

    private static bool Idle(AhciController hba)
    {
        using (((Lock)LockField.GetValue(hba)!).EnterScope())
        {
            foreach (var port in (Array)PortsField.GetValue(hba)!)
                if ((uint)BusyField.GetValue(port)! != 0) return false;
            return true;
        }
    }

    /// <summary>Waits until the I/O thread holds no slot of any port (nothing more happens until the guest acts),
    /// then checks that no running port with its link up and no error still has a command in PxCI: such a command
    /// was lost. (A queued command leaves PxCI when accepted; PxSACT may hold bits the guest set without a command,
    /// so it is not checked.) The wait has no bound of its own: an I/O thread that never finishes is a hang, which
    /// afl-fuzz reports and bench/fuzz.sh tells from a busy machine by replaying it.</summary>
    private static void Settle(AhciController hba, IBusDevice abar)
    {
        var spin = new SpinWait();
        while (!Idle(hba)) spin.SpinOnce();
        for (int port = DiskPort; port <= CdPort; port++)
            if (Pending(abar, port))
                throw new FuzzBugException($"port {port}: PxCI {Register(abar, port, AhciRegisters.PxCi):X8} still set with nothing running " +
                    $"(PxCMD {Register(abar, port, AhciRegisters.PxCmd):X8}, PxTFD {Register(abar, port, AhciRegisters.PxTfd):X8}, PxSSTS {Register(abar, port, AhciRegisters.PxSsts):X8})");
    }

    private static bool Pending(IBusDevice abar, int port)
    {
        uint cmd = Register(abar, port, AhciRegisters.PxCmd);
        uint tfd = Register(abar, port, AhciRegisters.PxTfd);
        uint ssts = Register(abar, port, AhciRegisters.PxSsts);
        bool runs = (cmd & AhciRegisters.CmdSt) != 0 && (ssts & 0xF) == 3 && (tfd & AhciRegisters.TfdErr) == 0;
        return runs && Register(abar, port, AhciRegisters.PxCi) != 0;
    }

    private static uint Register(IBusDevice abar, int port, int register)
    {
        Span<byte> b = stackalloc byte[4];
        abar.Read((ulong)(AhciRegisters.PortBase + port * AhciRegisters.PortSize + register), b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }
}
