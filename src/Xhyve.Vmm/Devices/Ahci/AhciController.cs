using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm.Devices.Ahci;

/// <summary>One command slot of a port: the command as fetched from guest memory, its PRDT mapped onto guest
/// RAM, on its way through the I/O pool. Preallocated (32 per port) and reused: a command costs no allocation.</summary>
internal sealed class AhciSlot(AhciPort port, int index)
{
    public const int InitialPrdtEntries = 64;
    public readonly AhciPort Port = port;
    public readonly int Index = index;
    public readonly byte[] Packet = new byte[16];
    public IoBuffer[] Buffers = new IoBuffer[InitialPrdtEntries];
    public int Count;
    public AtaCommand Command;
    public ulong HeaderAddress;
    public int Generation;
    public bool Queued, PioIn, BadPrdt;
}

/// <summary>The state of one port (§3.3); guarded by the controller's lock.</summary>
internal sealed class AhciPort
{
    public AhciPort(int index, IAhciDrive drive)
    {
        Index = index;
        Drive = drive;
        Slots = new AhciSlot[AhciRegisters.Slots];
        for (int i = 0; i < Slots.Length; i++) Slots[i] = new AhciSlot(this, i);
    }

    public readonly int Index;
    public readonly IAhciDrive Drive;
    public readonly AhciSlot[] Slots;
    public ulong Clb, Fb;
    public uint Is, Ie, Cmd, Tfd, Sig, Ssts, Sctl, Serr, Sact, Ci, Sntf;
    public int Ccs;
    /// <summary>Slots fetched and not yet ended in the current generation.</summary>
    public uint Started;
    /// <summary>Slots whose state an I/O thread still uses (whatever the generation): not reusable yet.</summary>
    public uint Busy;
    /// <summary>Bumped when ST clears or the port resets: completions of an older generation are dropped.</summary>
    public int Generation;
    public bool NonQueuedRunning;
    /// <summary>A command failed (task-file error): nothing more is processed until software clears ST (§6.3).</summary>
    public bool Error;
    public bool InReset, SignaturePending, SoftResetAsserted;

    public bool St => (Cmd & AhciRegisters.CmdSt) != 0;
    public bool Fre => (Cmd & AhciRegisters.CmdFre) != 0;
    public uint IsValue => Is | ((Serr & AhciRegisters.SerrDiagX) != 0 ? AhciRegisters.IsPcs : 0) | ((Serr & AhciRegisters.SerrDiagN) != 0 ? AhciRegisters.IsPrcs : 0);
}

/// <summary>
/// An AHCI 1.3.1 SATA host bus adapter (bhyve's ahci: an Intel ICH9 AHCI function, class 01/06/01) with one
/// drive per port. The ABAR (BAR5) holds the generic host registers and a register block per port; the guest
/// builds command lists, command tables and FIS receive areas in its RAM, and every value read from there is
/// checked: a malformed command ends with a task-file error, never an exception. Commands run on a small
/// pool of I/O threads, NCQ tags in parallel; interrupts (MSI, else INTx) are coalesced per completion burst.
/// </summary>
public sealed class AhciController : PciDevice, IDeviceCounters, IDisposable
{
    public const ushort VendorId = 0x8086, DeviceId = 0x2922;
    public const int AbarIndex = 5;
    public const ulong AbarSize = 0x2000;                // 0x100 + 32 * 0x80, rounded up to a power of two
    /// <summary>More PRDT entries than any driver builds (Linux: 168): a longer table is refused as hostile.</summary>
    public const int MaxPrdtEntries = 4096;
    public const int DefaultIoThreads = 4;

    private readonly AhciPort[] _ports;
    private readonly IGuestMemory _memory;
    private readonly IoWorkerPool<AhciSlot> _pool;
    private readonly RateLimitedLog _log;
    private readonly Lock _lock = new();
    private readonly int _msiCap;
    private readonly uint _cap;
    private bool _ghcIe;
    private bool _armed = true, _intxAsserted, _lastMsiEnabled;
    private long _reads, _writes, _flushes, _trims, _errors, _interrupts, _readBytes, _writtenBytes;
    private bool _disposed;

    public PciInterrupts Interrupts { get; }

    /// <param name="name">For messages and thread names: "ahci 0:4:0".</param>
    /// <param name="ports">The drives, port i = ports[i] (1 to 32); the controller owns and disposes them.</param>
    /// <param name="memory">Guest RAM, where the command lists, tables, data and FIS areas live.</param>
    /// <param name="msi">Where MSI messages go.</param>
    /// <param name="intx">The INTx line used while MSI is off.</param>
    /// <param name="ioThreads">I/O threads shared by the ports.</param>
    /// <param name="log">Where unexpected drive failures are reported (rate limited); stderr by default.</param>
    public AhciController(string name, IReadOnlyList<IAhciDrive> ports, IGuestMemory memory, IMsiSink msi, IInterruptLine intx,
        int ioThreads = DefaultIoThreads, RateLimitedLog? log = null)
        : base(name, new PciConfigSpace(VendorId, DeviceId, 0x01, 0x06, 0x01))
    {
        ArgumentNullException.ThrowIfNull(ports);
        if (ports.Count is < 1 or > AhciRegisters.MaxPorts) throw new ArgumentException($"{name}: an AHCI controller has 1 to 32 ports, not {ports.Count}", nameof(ports));
        if (ioThreads < 1) throw new ArgumentOutOfRangeException(nameof(ioThreads));
        _memory = memory;
        _log = log ?? new RateLimitedLog();
        _ports = new AhciPort[ports.Count];
        for (int i = 0; i < _ports.Length; i++) _ports[i] = new AhciPort(i, ports[i] ?? throw new ArgumentException($"{name}: port {i} has no drive", nameof(ports)));
        Drives = ports.ToArray();
        _cap = AhciRegisters.CapS64A | AhciRegisters.CapSncq | AhciRegisters.CapSclo | AhciRegisters.CapIssGen3 | AhciRegisters.CapSam
            | ((uint)(AhciRegisters.Slots - 1) << AhciRegisters.CapNcsShift) | (uint)(_ports.Length - 1);
        Interrupts = PciInterrupts.Create(Config, msi, intx, msiVectors: 1, msixVectors: 0, msixBar: 0, out _);
        _msiCap = (int)Config.Read(PciConfigSpace.CapabilitiesPointer, 1);
        AddBar(AbarIndex, PciBarKind.Memory32, AbarSize, new Abar(this));
        lock (_lock) HbaResetLocked();
        _pool = new IoWorkerPool<AhciSlot>(name, ioThreads, AhciRegisters.Slots * _ports.Length, Execute);
    }

    /// <summary>The drives, by port.</summary>
    public IReadOnlyList<IAhciDrive> Drives { get; }

    public IEnumerable<KeyValuePair<string, long>> Counters
    {
        get
        {
            yield return new("reads", Volatile.Read(ref _reads));
            yield return new("writes", Volatile.Read(ref _writes));
            yield return new("flushes", Volatile.Read(ref _flushes));
            yield return new("trims", Volatile.Read(ref _trims));
            yield return new("errors", Volatile.Read(ref _errors));
            yield return new("interrupts", Volatile.Read(ref _interrupts));
            yield return new("read_bytes", Volatile.Read(ref _readBytes));
            yield return new("written_bytes", Volatile.Read(ref _writtenBytes));
        }
    }

    public override void ConfigWritten(int offset, int width)
    {
        Interrupts.Reevaluate();
        lock (_lock)
        {
            // MSI switched on while something is pending: the guest must hear about it.
            bool msi = MsiEnabled;
            if (msi != _lastMsiEnabled) { _lastMsiEnabled = msi; _armed = true; }
            EvaluateInterruptsLocked();
        }
    }

    private bool MsiEnabled => (Config.ReadWord(_msiCap + 2) & 1) != 0;

    // ---- Registers -------------------------------------------------------------------------------------

    private sealed class Abar(AhciController hba) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            data.Fill(0);
            if (offset >= AbarSize || data.Length is not (1 or 2 or 4 or 8)) return;
            if (data.Length == 8)
            {
                if ((offset & 7) != 0) return;
                BinaryPrimitives.WriteUInt32LittleEndian(data, hba.ReadRegister((int)offset));
                BinaryPrimitives.WriteUInt32LittleEndian(data[4..], hba.ReadRegister((int)offset + 4));
                return;
            }
            if (((int)offset & 3) + data.Length > 4) return;
            uint v = hba.ReadRegister((int)offset & ~3) >> (8 * ((int)offset & 3));
            for (int i = 0; i < data.Length; i++) data[i] = (byte)(v >> (8 * i));
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            // Registers are dwords (§3: "accessed as 32-bit"); narrower writes would half-apply W1C and doorbell bits.
            if (offset >= AbarSize || (offset & 3) != 0) return;
            if (data.Length == 4) hba.WriteRegister((int)offset, BinaryPrimitives.ReadUInt32LittleEndian(data));
            else if (data.Length == 8 && (offset & 7) == 0)
            {
                hba.WriteRegister((int)offset, BinaryPrimitives.ReadUInt32LittleEndian(data));
                hba.WriteRegister((int)offset + 4, BinaryPrimitives.ReadUInt32LittleEndian(data[4..]));
            }
        }
    }

    internal uint ReadRegister(int offset)
    {
        // Without the lock: every register is one field written under it (a 32- or 64-bit read is atomic here), and a
        // polling driver reads PxCI/PxSACT/PxIS in a loop; taking the lock for that kept the I/O thread from posting the
        // completion the driver was waiting for (bench/ahci.sh: sequential reads at a third of QEMU's rate).
        if (offset < AhciRegisters.PortBase)
        {
            return offset switch
            {
                AhciRegisters.Cap => _cap,
                AhciRegisters.Ghc => AhciRegisters.GhcAe | (_ghcIe ? AhciRegisters.GhcIe : 0),
                AhciRegisters.Is => PendingPorts(),
                AhciRegisters.Pi => _ports.Length == 32 ? 0xFFFF_FFFF : (1u << _ports.Length) - 1,
                AhciRegisters.Vs => AhciRegisters.Version,
                _ => 0,                                    // CCC, enclosure management, CAP2, BOHC: not implemented
            };
        }
        int index = (offset - AhciRegisters.PortBase) / AhciRegisters.PortSize;
        if (index >= _ports.Length) return 0;
        var p = _ports[index];
        return ((offset - AhciRegisters.PortBase) % AhciRegisters.PortSize) switch
        {
            AhciRegisters.PxClb => (uint)p.Clb,
            AhciRegisters.PxClbu => (uint)(p.Clb >> 32),
            AhciRegisters.PxFb => (uint)p.Fb,
            AhciRegisters.PxFbu => (uint)(p.Fb >> 32),
            AhciRegisters.PxIs => p.IsValue,
            AhciRegisters.PxIe => p.Ie,
            AhciRegisters.PxCmd => CmdValue(p),
            AhciRegisters.PxTfd => p.Tfd,
            AhciRegisters.PxSig => p.Sig,
            AhciRegisters.PxSsts => p.Ssts,
            AhciRegisters.PxSctl => p.Sctl,
            AhciRegisters.PxSerr => p.Serr,
            AhciRegisters.PxSact => p.Sact,
            AhciRegisters.PxCi => p.Ci,
            AhciRegisters.PxSntf => p.Sntf,
            _ => 0,
        };
    }

    private static uint CmdValue(AhciPort p)
    {
        uint v = p.Cmd | AhciRegisters.CmdSud | AhciRegisters.CmdPod | ((uint)p.Ccs << AhciRegisters.CmdCcsShift);
        if (p.Fre) v |= AhciRegisters.CmdFr;
        // CR stays set until the I/O threads are done with every slot, so a driver that waits for CR after
        // clearing ST knows no more DMA lands in its buffers.
        if (p.St || p.Busy != 0) v |= AhciRegisters.CmdCr;
        return v;
    }

    internal void WriteRegister(int offset, uint value)
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (offset < AhciRegisters.PortBase)
            {
                switch (offset)
                {
                    case AhciRegisters.Ghc:
                        if ((value & AhciRegisters.GhcHr) != 0) HbaResetLocked();
                        else _ghcIe = (value & AhciRegisters.GhcIe) != 0;
                        _armed = true;
                        break;
                    case AhciRegisters.Is:
                        // The bits follow the ports' pending state (bhyve does the same); the write acknowledges,
                        // and a port still pending raises a new message.
                        _armed = true;
                        break;
                }
                EvaluateInterruptsLocked();
                return;
            }
            int index = (offset - AhciRegisters.PortBase) / AhciRegisters.PortSize;
            if (index >= _ports.Length) return;
            WritePortLocked(_ports[index], (offset - AhciRegisters.PortBase) % AhciRegisters.PortSize, value);
            EvaluateInterruptsLocked();
        }
    }

    private void WritePortLocked(AhciPort p, int register, uint value)
    {
        switch (register)
        {
            case AhciRegisters.PxClb: p.Clb = (p.Clb & ~0xFFFF_FFFFUL) | (value & ~0x3FFu); break;   // 1 KiB aligned
            case AhciRegisters.PxClbu: p.Clb = (p.Clb & 0xFFFF_FFFF) | ((ulong)value << 32); break;
            case AhciRegisters.PxFb: p.Fb = (p.Fb & ~0xFFFF_FFFFUL) | (value & ~0xFFu); break;       // 256-byte aligned
            case AhciRegisters.PxFbu: p.Fb = (p.Fb & 0xFFFF_FFFF) | ((ulong)value << 32); break;
            case AhciRegisters.PxIs: p.Is &= ~value; _armed = true; break;
            case AhciRegisters.PxIe: p.Ie = value & AhciRegisters.IsDefined; _armed = true; break;
            case AhciRegisters.PxCmd: WriteCmdLocked(p, value); break;
            case AhciRegisters.PxSctl: WriteSctlLocked(p, value); break;
            case AhciRegisters.PxSerr: p.Serr &= ~value; break;
            case AhciRegisters.PxSact:
                if (p.St) p.Sact |= value;
                break;
            case AhciRegisters.PxCi:
                if (p.St)
                {
                    p.Ci |= value;
                    ScanLocked(p);
                }
                break;
            case AhciRegisters.PxSntf: p.Sntf &= ~value; break;
        }
    }

    private void WriteCmdLocked(AhciPort p, uint value)
    {
        bool wasSt = p.St, wasFre = p.Fre;
        p.Cmd = value & (AhciRegisters.CmdSt | AhciRegisters.CmdFre | AhciRegisters.CmdAtapi | AhciRegisters.CmdDlae);
        if ((value & AhciRegisters.CmdClo) != 0) p.Tfd &= ~(AhciRegisters.TfdBsy | AhciRegisters.TfdDrq);   // command list override; CLO reads back 0
        if (wasSt && !p.St) StopLocked(p);
        if (!wasSt && p.St)
        {
            p.Error = false;
            p.Ccs = 0;
        }
        if (!wasFre && p.Fre && p.SignaturePending) PostSignatureLocked(p);
        if (p.St) ScanLocked(p);
    }

    /// <summary>ST cleared (§3.3.7): PxCI and PxSACT clear, commands still on I/O threads are forgotten.</summary>
    private static void StopLocked(AhciPort p)
    {
        p.Ci = 0;
        p.Sact = 0;
        p.Started = 0;
        p.Generation++;
        p.NonQueuedRunning = false;
        p.Error = false;
        p.Ccs = 0;
    }

    private void WriteSctlLocked(AhciPort p, uint value)
    {
        p.Sctl = value & 0xF_FFFF;
        switch (value & 0xF)
        {
            case 1:     // COMRESET asserted: the link is down until DET returns to 0
            case 4:     // PHY offline
                p.InReset = true;
                p.Ssts = (value & 0xF) == 4 ? 4u : 0u;
                StopLocked(p);
                if (p.St) p.Cmd &= ~AhciRegisters.CmdSt;
                break;
            case 0 when p.InReset:
                p.InReset = false;
                ComResetLocked(p);
                break;
        }
    }

    /// <summary>The device was reset and the link came up: PxSSTS, PxSIG, PxTFD from its signature, a
    /// signature FIS (now, or when FRE is set), and PxSERR.DIAG.X (device presence changed, §3.3.12).</summary>
    private void ComResetLocked(AhciPort p)
    {
        StopLocked(p);
        p.Drive.Reset();
        uint spd = (p.Sctl >> 4) & 0xF;
        p.Ssts = AhciRegisters.SstsPresent | AhciRegisters.SstsActive | (spd is >= 1 and <= 3 ? spd << 4 : AhciRegisters.SstsGen3);
        p.Sig = p.Drive.Signature;
        p.Tfd = (1u << 8) | (p.Drive.IsAtapi ? 0u : 0x50u);   // error 01: diagnostics passed
        p.Serr |= AhciRegisters.SerrDiagX;
        p.SoftResetAsserted = false;
        p.SignaturePending = true;
        if (p.Fre) PostSignatureLocked(p);
    }

    private void PostSignatureLocked(AhciPort p)
    {
        p.SignaturePending = false;
        Span<byte> fis = stackalloc byte[20];
        fis.Clear();
        uint sig = p.Sig;
        fis[0] = AhciRegisters.FisRegD2H;
        fis[2] = (byte)p.Tfd;
        fis[3] = (byte)(p.Tfd >> 8);
        fis[4] = (byte)(sig >> 8); fis[5] = (byte)(sig >> 16); fis[6] = (byte)(sig >> 24);
        fis[12] = (byte)sig;
        WriteFisLocked(p, AhciRegisters.RxRfis, fis);
    }

    /// <summary>GHC.HR (§10.4.3): every port register but PxCLB/PxFB back to its reset value, then each link resets.</summary>
    private void HbaResetLocked()
    {
        _ghcIe = false;
        foreach (var p in _ports)
        {
            StopLocked(p);
            p.Is = p.Ie = p.Cmd = p.Serr = p.Sntf = p.Sctl = 0;
            p.InReset = false;
            ComResetLocked(p);
        }
        _armed = true;
    }

    // ---- Command processing ----------------------------------------------------------------------------

    private enum FetchResult { Command, Control, Failed }

    /// <summary>Starts the issued slots nobody started yet: queued ones all at once, a non-queued one alone.</summary>
    private void ScanLocked(AhciPort p)
    {
        Span<byte> fis = stackalloc byte[20];
        while (p.St && !p.Error && !p.NonQueuedRunning && !p.InReset)
        {
            uint candidates = p.Ci & ~p.Started & ~p.Busy;
            if (candidates == 0) return;
            int s = BitOperations.TrailingZeroCount(candidates);
            var slot = p.Slots[s];
            uint bit = 1u << s;
            switch (Fetch(p, slot))
            {
                case FetchResult.Failed:
                    FailLocked(p, slot);
                    return;
                case FetchResult.Control:
                    p.Ci &= ~bit;
                    continue;
            }
            if (slot.Queued)
            {
                if (((slot.Command.Count >> 3) & 0x1F) != s || slot.Command.Command is not (0x60 or 0x61))
                {
                    // A tag that is not its slot, or an NCQ command we do not implement (NON-DATA, SEND/RECEIVE FPDMA).
                    FailLocked(p, slot);
                    return;
                }
                // Accepted at once (SATA NCQ): PxCI clears on a D2H FIS with BSY clear, the data phase comes later.
                p.Sact |= bit;
                p.Ci &= ~bit;
                p.Tfd = 0x40;
                D2HFis(fis, 0x40, 0, default, interrupt: false);
                WriteFisLocked(p, AhciRegisters.RxRfis, fis);
                SubmitLocked(p, slot);
                continue;
            }
            // ATA allows no other command beside queued ones: wait for them to drain.
            if (p.Busy != 0) return;
            p.NonQueuedRunning = true;
            p.Ccs = s;
            p.Tfd = (p.Tfd & ~0xFFu) | AhciRegisters.TfdBsy;
            SubmitLocked(p, slot);
            return;
        }
    }

    private void SubmitLocked(AhciPort p, AhciSlot slot)
    {
        uint bit = 1u << slot.Index;
        p.Started |= bit;
        p.Busy |= bit;
        slot.Generation = p.Generation;
        if (!_pool.TrySubmit(slot))
        {
            // Only while disposing: nothing runs any more.
            p.Busy &= ~bit;
            p.Started &= ~bit;
        }
    }

    /// <summary>Reads slot <paramref name="slot"/>'s header, command FIS, packet and PRDT from guest memory,
    /// checking every value. A queued command with a bad PRDT is still run (with no buffers, so the drive fails
    /// it and its NCQ error log names the tag).</summary>
    private unsafe FetchResult Fetch(AhciPort p, AhciSlot slot)
    {
        slot.Count = 0;
        slot.BadPrdt = false;
        slot.Queued = false;
        slot.PioIn = false;
        slot.HeaderAddress = p.Clb + (ulong)(slot.Index * AhciRegisters.HeaderSize);
        Span<byte> header = stackalloc byte[AhciRegisters.HeaderSize];
        if (p.Clb + AhciRegisters.HeaderSize * AhciRegisters.Slots < p.Clb || !_memory.TryRead(new GuestAddress(slot.HeaderAddress), header))
            return FetchResult.Failed;
        uint dw0 = BinaryPrimitives.ReadUInt32LittleEndian(header);
        int cfl = (int)(dw0 & 0x1F);
        int prdtl = (int)(dw0 >> 16);
        ulong ctba = (BinaryPrimitives.ReadUInt32LittleEndian(header[8..]) | ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(header[12..]) << 32)) & ~0x7FUL;
        if (cfl < 5) return FetchResult.Failed;    // shorter than a Register H2D FIS
        Span<byte> fis = stackalloc byte[20];
        if (!_memory.TryRead(new GuestAddress(ctba), fis) || fis[0] != AhciRegisters.FisRegH2D) return FetchResult.Failed;

        if ((fis[1] & 0x80) == 0)
        {
            // A device control FIS (C clear): software reset (SRST set, then cleared) as Linux's softreset sends it.
            if ((fis[15] & 0x04) != 0) { p.SoftResetAsserted = true; p.Tfd |= AhciRegisters.TfdBsy; }
            else if (p.SoftResetAsserted)
            {
                p.SoftResetAsserted = false;
                p.Drive.Reset();
                p.Sig = p.Drive.Signature;
                p.Tfd = (1u << 8) | (p.Drive.IsAtapi ? 0u : 0x50u);
                PostSignatureLocked(p);
            }
            return FetchResult.Control;
        }

        byte command = fis[2];
        slot.Command = new AtaCommand(command,
            (ushort)(fis[3] | (fis[11] << 8)),
            fis[4] | ((ulong)fis[5] << 8) | ((ulong)fis[6] << 16) | ((ulong)fis[8] << 24) | ((ulong)fis[9] << 32) | ((ulong)fis[10] << 40),
            (ushort)(fis[12] | (fis[13] << 8)), fis[7], fis[15]);
        slot.Queued = command is 0x60 or 0x61 or 0x63 or 0x64 or 0x65;
        bool write = (dw0 & AhciRegisters.HeaderWrite) != 0;
        if (p.Drive.IsAtapi)
        {
            if (!TryAdd(ctba, AhciRegisters.TableAcmd, out ulong acmd) || !_memory.TryRead(new GuestAddress(acmd), slot.Packet)) return FetchResult.Failed;
            slot.PioIn = command == 0xA0 && (slot.Command.Features & 1) == 0 && !write;
        }
        else slot.PioIn = command is 0xEC or 0xA1 or 0x2F or 0x20 or 0x24 or 0xC4 or 0x29 or 0xE4;

        if (prdtl > MaxPrdtEntries) return Bad(slot);
        if (slot.Buffers.Length < prdtl) slot.Buffers = new IoBuffer[(int)BitOperations.RoundUpToPowerOf2((uint)prdtl)];   // once per slot, not per command
        Span<byte> entry = stackalloc byte[AhciRegisters.PrdtEntrySize];
        for (int i = 0; i < prdtl; i++)
        {
            if (!TryAdd(ctba, AhciRegisters.TablePrdt + (ulong)(i * AhciRegisters.PrdtEntrySize), out ulong at) || !_memory.TryRead(new GuestAddress(at), entry))
                return Bad(slot);
            ulong dba = BinaryPrimitives.ReadUInt32LittleEndian(entry) | ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(entry[4..]) << 32);
            uint dw3 = BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]);
            int length = (int)(dw3 & 0x3F_FFFF) + 1;
            // DBA must be word aligned and DBC an even count (§4.2.3.3); the buffer must be one piece of RAM.
            if ((dba & 1) != 0 || (length & 1) != 0 || !_memory.TryGetSpan(new GuestAddress(dba), length, out var span)) return Bad(slot);
            slot.Buffers[i] = new IoBuffer((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span)), length);
        }
        slot.Count = prdtl;
        return FetchResult.Command;
    }

    private static bool TryAdd(ulong a, ulong b, out ulong sum)
    {
        sum = a + b;
        return sum >= a;
    }

    private static FetchResult Bad(AhciSlot slot)
    {
        slot.Count = 0;
        slot.BadPrdt = true;
        return slot.Queued ? FetchResult.Command : FetchResult.Failed;
    }

    private void Execute(AhciSlot slot)
    {
        var p = slot.Port;
        AtaCompletion c;
        try
        {
            c = p.Drive.Execute(slot.Command, p.Drive.IsAtapi ? slot.Packet : ReadOnlySpan<byte>.Empty, slot.Buffers.AsSpan(0, slot.Count));
        }
        catch (Exception e)
        {
            // Drives report errors as completions; an exception is a drive bug, and must not end the engine.
            _log.Write($"{p.Drive.Name}: command 0x{slot.Command.Command:X2} failed: {e.Message}");
            c = AtaCompletion.Abort();
        }
        if (slot.BadPrdt && !c.IsError) c = AtaCompletion.Abort();
        lock (_lock)
        {
            CompleteLocked(p, slot, c);
            ScanLocked(p);
            EvaluateInterruptsLocked();
        }
    }

    private void CompleteLocked(AhciPort p, AhciSlot slot, in AtaCompletion c)
    {
        uint bit = 1u << slot.Index;
        p.Busy &= ~bit;
        if (slot.Generation != p.Generation || _disposed) return;   // ST cleared or a reset meanwhile: forgotten
        p.Started &= ~bit;
        if (!slot.Queued) p.NonQueuedRunning = false;
        Count(slot, c);
        if (p.Error) return;    // the port stopped on an earlier error: the guest restarts it and retries
        Span<byte> fis = stackalloc byte[20];
        if (slot.Queued)
        {
            // Set Device Bits FIS (SATA §10.5.7): the finished tag in SActive, or ERR and no tag on a failure.
            fis[..8].Clear();
            fis[0] = AhciRegisters.FisSetDeviceBits;
            fis[1] = 0x40;
            fis[2] = (byte)(c.Status & 0x77);
            fis[3] = c.Error;
            if (!c.IsError) BinaryPrimitives.WriteUInt32LittleEndian(fis[4..], bit);
            WriteFisLocked(p, AhciRegisters.RxSdbfis, fis[..8]);
            p.Tfd = (uint)(c.Status & 0x77) | ((uint)c.Error << 8);
            p.Is |= AhciRegisters.IsSdbs;
            if (c.IsError) { p.Is |= AhciRegisters.IsTfes; p.Error = true; }
            else p.Sact &= ~bit;
            return;
        }
        WritePrdbcLocked(slot, c.TransferredBytes);
        if (slot.PioIn && !c.IsError && c.TransferredBytes > 0)
        {
            // Linux takes a PIO data-in command's result from the PIO Setup FIS (ahci_qc_fill_rtf), as real
            // devices send no D2H FIS after one.
            fis.Clear();
            fis[0] = AhciRegisters.FisPioSetup;
            fis[1] = 0x20 | 0x40;                 // D: device to host, I
            fis[2] = (byte)(c.Status | AhciRegisters.TfdDrq);
            fis[4] = (byte)c.Lba; fis[5] = (byte)(c.Lba >> 8); fis[6] = (byte)(c.Lba >> 16); fis[7] = c.Device;
            fis[8] = (byte)(c.Lba >> 24); fis[9] = (byte)(c.Lba >> 32); fis[10] = (byte)(c.Lba >> 40);
            fis[12] = (byte)c.Count; fis[13] = (byte)(c.Count >> 8);
            fis[15] = c.Status;
            BinaryPrimitives.WriteUInt16LittleEndian(fis[16..], (ushort)c.TransferredBytes);
            WriteFisLocked(p, AhciRegisters.RxPsfis, fis);
            p.Is |= AhciRegisters.IsPss;
        }
        D2HFis(fis, c.Status, c.Error, c, interrupt: true);
        WriteFisLocked(p, AhciRegisters.RxRfis, fis);
        p.Tfd = c.Status | ((uint)c.Error << 8);
        p.Is |= AhciRegisters.IsDhrs;
        if (c.IsError) { p.Is |= AhciRegisters.IsTfes; p.Error = true; }   // PxCI keeps the failed slot (§6.3)
        else p.Ci &= ~bit;
    }

    /// <summary>A command that could not even be fetched (bad header, FIS or PRDT): a task-file error with ABRT,
    /// reported like a failed command, and the port stops.</summary>
    private void FailLocked(AhciPort p, AhciSlot slot)
    {
        _errors++;
        p.Ccs = slot.Index;
        var c = AtaCompletion.Abort();
        WritePrdbcLocked(slot, 0);
        Span<byte> fis = stackalloc byte[20];
        D2HFis(fis, c.Status, c.Error, default, interrupt: true);
        WriteFisLocked(p, AhciRegisters.RxRfis, fis);
        p.Tfd = c.Status | ((uint)c.Error << 8);
        p.Is |= AhciRegisters.IsDhrs | AhciRegisters.IsTfes;
        p.Error = true;
    }

    private static void D2HFis(Span<byte> fis, byte status, byte error, in AtaCompletion c, bool interrupt)
    {
        fis.Clear();
        fis[0] = AhciRegisters.FisRegD2H;
        fis[1] = interrupt ? (byte)0x40 : (byte)0;
        fis[2] = status;
        fis[3] = error;
        fis[4] = (byte)c.Lba; fis[5] = (byte)(c.Lba >> 8); fis[6] = (byte)(c.Lba >> 16); fis[7] = c.Device;
        fis[8] = (byte)(c.Lba >> 24); fis[9] = (byte)(c.Lba >> 32); fis[10] = (byte)(c.Lba >> 40);
        fis[12] = (byte)c.Count; fis[13] = (byte)(c.Count >> 8);
    }

    private void WritePrdbcLocked(AhciSlot slot, int bytes)
    {
        Span<byte> v = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(v, (uint)bytes);
        _memory.TryWrite(new GuestAddress(slot.HeaderAddress + 4), v);   // a header outside RAM was refused at fetch
    }

    /// <summary>Posts a FIS into the receive area when FRE is set; an area outside RAM receives nothing.</summary>
    private void WriteFisLocked(AhciPort p, int offset, ReadOnlySpan<byte> fis)
    {
        if (!p.Fre) return;
        _memory.TryWrite(new GuestAddress(p.Fb + (ulong)offset), fis);
    }

    private void Count(AhciSlot slot, in AtaCompletion c)
    {
        if (c.IsError) { _errors++; return; }
        byte code = slot.Command.Command;
        if (slot.Port.Drive.IsAtapi && code == 0xA0) code = slot.Packet[0] is 0x28 or 0xA8 ? (byte)0xC8 : (byte)0;
        switch (code)
        {
            case 0x20 or 0x24 or 0x25 or 0xC8 or 0x60: _reads++; _readBytes += c.TransferredBytes; break;
            case 0x30 or 0x34 or 0x35 or 0xCA or 0x61: _writes++; _writtenBytes += c.TransferredBytes; break;
            case 0xE7 or 0xEA: _flushes++; break;
            case 0x06 when (slot.Command.Features & 1) != 0: _trims++; break;
        }
    }

    // ---- Interrupts ------------------------------------------------------------------------------------

    // Reads only (also without the lock, from ReadRegister).
    private uint PendingPorts()
    {
        uint pending = 0;
        foreach (var p in _ports)
            if ((p.IsValue & p.Ie) != 0) pending |= 1u << p.Index;
        return pending;
    }

    /// <summary>One message per burst: a message goes out when something is pending and the guest has
    /// acknowledged (written PxIS, IS, IE or GHC) since the last one, or nothing was pending in between.
    /// INTx follows the pending state as a level.</summary>
    private void EvaluateInterruptsLocked()
    {
        bool pending = _ghcIe && PendingPorts() != 0;
        if (!pending) _armed = true;
        if (MsiEnabled)
        {
            if (_intxAsserted) { _intxAsserted = false; Interrupts.DeassertIntx(); }
            if (pending && _armed)
            {
                _armed = false;
                _interrupts++;
                Interrupts.Trigger(0);
            }
            return;
        }
        if (pending && !_intxAsserted)
        {
            _intxAsserted = true;
            _interrupts++;
            Interrupts.Trigger(0);
        }
        else if (!pending && _intxAsserted)
        {
            _intxAsserted = false;
            Interrupts.DeassertIntx();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _pool.Dispose();
        foreach (var d in Drives) d.Dispose();
    }
}
