using System.Buffers.Binary;
using System.Collections.Concurrent;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Ahci;

/// <summary>Counts MSI messages; thread-safe (completions signal from I/O threads).</summary>
internal sealed class CountingMsiSink : IMsiSink
{
    private int _count;
    public int Count => Volatile.Read(ref _count);
    public void Signal(int vector, ulong address, uint data) => Interlocked.Increment(ref _count);
}

/// <summary>A drive that records what the port hands it, can hold commands in flight (Gate) and returns
/// <see cref="Result"/>, after filling the data list with <see cref="Fill"/> bytes when asked.</summary>
internal sealed class FakeDrive(bool atapi = false) : IAhciDrive
{
    public string Name => "fake drive";
    public uint Signature => atapi ? 0xEB14_0101 : 0x0000_0101;
    public bool IsAtapi => atapi;
    public readonly ConcurrentQueue<AtaCommand> Commands = new();
    public readonly ManualResetEventSlim Gate = new(true);
    public volatile int Calls, Resets, InFlight, MaxInFlight;
    public long LastDataLength = -1;
    public int LastEntries = -1;
    public byte[] LastPacket = [];
    public AtaCompletion Result = AtaCompletion.Ok();
    public byte? Fill;
    public Exception? Throw;
    public bool Disposed;

    public AtaCompletion Execute(in AtaCommand command, ReadOnlySpan<byte> packet, ReadOnlySpan<IoBuffer> data)
    {
        Interlocked.Increment(ref Calls);
        int now = Interlocked.Increment(ref InFlight);
        int max;
        while (now > (max = MaxInFlight) && Interlocked.CompareExchange(ref MaxInFlight, now, max) != max) { }
        Commands.Enqueue(command);
        LastPacket = packet.ToArray();
        Interlocked.Exchange(ref LastDataLength, ScatterList.Length(data));
        LastEntries = data.Length;
        Gate.Wait(TimeSpan.FromSeconds(10));
        Interlocked.Decrement(ref InFlight);
        if (Throw != null) throw Throw;
        int moved = 0;
        if (Fill is { } f)
        {
            var bytes = new byte[ScatterList.Length(data)];
            Array.Fill(bytes, f);
            moved = ScatterList.CopyTo(bytes, data);
        }
        return Result.IsError ? Result : Result with { TransferredBytes = moved };
    }

    public void Reset() => Interlocked.Increment(ref Resets);
    public void Dispose() => Disposed = true;
}

/// <summary>
/// A guest's side of an AHCI controller: RAM in two adjacent regions (0-16 MiB and 16-32 MiB, so a buffer can
/// cross them), register access through BAR5 as MMIO, and command lists, tables and PRDTs built by hand.
/// </summary>
internal sealed class AhciTestBed : IDisposable
{
    public const ulong RegionSplit = 16UL << 20, RamSize = 32UL << 20;
    public const ulong DataBase = 0x80_0000;
    public readonly GuestMemory Memory = new([new MemoryRegion(new GuestAddress(0), RegionSplit), new MemoryRegion(new GuestAddress(RegionSplit), RamSize - RegionSplit)]);
    public readonly CountingMsiSink Msi = new();
    public readonly RecordingInterruptLine Intx = new();
    public readonly AhciController Hba;
    private readonly IBusDevice _abar;

    public AhciTestBed(params IAhciDrive[] drives)
    {
        Hba = new AhciController("ahci test", drives, Memory, Msi, Intx, ioThreads: 4);
        _abar = Hba.Bars.Single(b => b.Index == AhciController.AbarIndex).Handler;
    }

    public static ulong Clb(int port) => 0x1000 + (ulong)port * 0x400;
    public static ulong Fb(int port) => 0x10000 + (ulong)port * 0x100;
    public static ulong Table(int port, int slot) => 0x10_0000 + (ulong)port * 0x4_0000 + (ulong)slot * 0x2000;

    public uint R(int offset)
    {
        Span<byte> b = stackalloc byte[4];
        _abar.Read((ulong)offset, b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public void W(int offset, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _abar.Write((ulong)offset, b);
    }

    public uint PR(int port, int register) => R(AhciRegisters.PortBase + port * AhciRegisters.PortSize + register);
    public void PW(int port, int register, uint value) => W(AhciRegisters.PortBase + port * AhciRegisters.PortSize + register, value);

    /// <summary>What a driver does before issuing commands: list and FIS area, FRE then ST, every interrupt enabled.</summary>
    public void StartPort(int port, bool interrupts = true)
    {
        PW(port, AhciRegisters.PxClb, (uint)Clb(port));
        PW(port, AhciRegisters.PxFb, (uint)Fb(port));
        PW(port, AhciRegisters.PxSerr, 0xFFFF_FFFF);
        PW(port, AhciRegisters.PxIs, 0xFFFF_FFFF);
        PW(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        PW(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
        if (interrupts)
        {
            PW(port, AhciRegisters.PxIe, AhciRegisters.IsDefined);
            W(AhciRegisters.Ghc, AhciRegisters.GhcIe);
        }
    }

    /// <summary>Restarts a port after an error as Linux's EH does (§6.3.2): clear ST, wait for CR, clear SERR and IS, set ST.</summary>
    public void RestartPort(int port)
    {
        PW(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre);
        Assert.True(SpinWait.SpinUntil(() => (PR(port, AhciRegisters.PxCmd) & AhciRegisters.CmdCr) == 0, 5000), "CR did not clear");
        PW(port, AhciRegisters.PxSerr, 0xFFFF_FFFF);
        PW(port, AhciRegisters.PxIs, 0xFFFF_FFFF);
        PW(port, AhciRegisters.PxCmd, AhciRegisters.CmdFre | AhciRegisters.CmdSt);
    }

    public void EnableMsi()
    {
        int cap = (int)Hba.Config.Read(PciConfigSpace.CapabilitiesPointer, 1);
        Hba.Config.Write(cap + 4, 4, 0xFEE0_0000);
        Hba.Config.Write(cap + 12, 2, 0x41);
        Hba.Config.Write(cap + 2, 2, 1);
        Hba.ConfigWritten(cap + 2, 2);
    }

    /// <summary>A Register H2D FIS (SATA §10.5.5).</summary>
    public static byte[] H2D(byte command, ulong lba = 0, ushort count = 0, ushort features = 0, byte device = 0x40, bool c = true, byte control = 0, byte type = AhciRegisters.FisRegH2D)
    {
        var f = new byte[20];
        f[0] = type;
        f[1] = c ? (byte)0x80 : (byte)0;
        f[2] = command;
        f[3] = (byte)features; f[11] = (byte)(features >> 8);
        f[4] = (byte)lba; f[5] = (byte)(lba >> 8); f[6] = (byte)(lba >> 16);
        f[8] = (byte)(lba >> 24); f[9] = (byte)(lba >> 32); f[10] = (byte)(lba >> 40);
        f[7] = device;
        f[12] = (byte)count; f[13] = (byte)(count >> 8);
        f[15] = control;
        return f;
    }

    /// <summary>Writes slot <paramref name="slot"/>'s header and command table; PRDT entries are (address, byte count)
    /// with the DBC field written as count - 1, as drivers do.</summary>
    public void Build(int port, int slot, byte[] fis, (ulong Address, uint Bytes)[] prdt, bool write = false, int cfl = 5,
        int? prdtl = null, ulong? ctba = null, byte[]? packet = null, bool interruptOnEntry = false)
    {
        ulong table = ctba ?? Table(port, slot);
        var header = new byte[AhciRegisters.HeaderSize];
        uint dw0 = (uint)cfl | (write ? AhciRegisters.HeaderWrite : 0) | (packet != null ? AhciRegisters.HeaderAtapi : 0) | ((uint)(prdtl ?? prdt.Length) << 16);
        BinaryPrimitives.WriteUInt32LittleEndian(header, dw0);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 0xDEAD_BEEF);   // PRDBC: the HBA must overwrite it
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), (uint)table);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)(table >> 32));
        Memory.WriteExactly(new GuestAddress(Clb(port) + (ulong)(slot * AhciRegisters.HeaderSize)), header);
        if (table >= RamSize - 0x80) return;   // a hostile table address: only the header is written
        Memory.WriteExactly(new GuestAddress(table), fis);
        if (packet != null) Memory.WriteExactly(new GuestAddress(table + AhciRegisters.TableAcmd), packet);
        var entry = new byte[AhciRegisters.PrdtEntrySize];
        for (int i = 0; i < prdt.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(entry, prdt[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(8), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(12), (prdt[i].Bytes - 1) | (interruptOnEntry ? 1u << 31 : 0));
            Memory.WriteExactly(new GuestAddress(table + AhciRegisters.TablePrdt + (ulong)(i * AhciRegisters.PrdtEntrySize)), entry);
        }
    }

    public uint Prdbc(int port, int slot)
    {
        var b = new byte[4];
        Memory.ReadExactly(new GuestAddress(Clb(port) + (ulong)(slot * AhciRegisters.HeaderSize) + 4), b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public byte[] ReceivedFis(int port, int offset, int length)
    {
        var b = new byte[length];
        Memory.ReadExactly(new GuestAddress(Fb(port) + (ulong)offset), b);
        return b;
    }

    public byte[] Read(ulong address, int length)
    {
        var b = new byte[length];
        Memory.ReadExactly(new GuestAddress(address), b);
        return b;
    }

    public void Write(ulong address, byte[] data) => Memory.WriteExactly(new GuestAddress(address), data);

    /// <summary>Issues the slots (PxSACT first for queued ones, as §5.6.4 asks) and waits until they end:
    /// PxCI and PxSACT clear for them, or the port reports a task-file error.</summary>
    public void Issue(int port, uint slots, bool queued = false)
    {
        if (queued) PW(port, AhciRegisters.PxSact, slots);
        PW(port, AhciRegisters.PxCi, slots);
    }

    public bool WaitDone(int port, uint slots, int timeoutMs = 5000) =>
        SpinWait.SpinUntil(() => ((PR(port, AhciRegisters.PxCi) | PR(port, AhciRegisters.PxSact)) & slots) == 0 || (PR(port, AhciRegisters.PxIs) & AhciRegisters.IsTfes) != 0, timeoutMs);

    public bool Failed(int port) => (PR(port, AhciRegisters.PxIs) & AhciRegisters.IsTfes) != 0;

    /// <summary>Runs one command to its end; true when it succeeded.</summary>
    public bool Run(int port, int slot, byte[] fis, (ulong Address, uint Bytes)[] prdt, bool write = false, bool queued = false)
    {
        Build(port, slot, fis, prdt, write);
        Issue(port, 1u << slot, queued);
        Assert.True(WaitDone(port, 1u << slot), "the command did not end");
        return !Failed(port);
    }

    public void Dispose()
    {
        Hba.Dispose();
        Memory.Dispose();
    }
}
