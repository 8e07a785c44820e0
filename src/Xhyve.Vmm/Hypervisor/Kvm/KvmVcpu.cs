using System.Runtime.InteropServices;
using System.Threading;
using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Hypervisor.Kvm;

internal sealed unsafe class KvmVcpu : IVcpu
{
    /// <summary>The real-time signal that kicks a vCPU thread out of KVM_RUN. Its handler does
    /// nothing: the point is the EINTR (SIGRTMIN+6; .NET itself uses SIGRTMIN).</summary>
    internal const int KickSignal = 40;
    private static PosixSignalRegistration? s_kickHandler;
    private static readonly Lock s_kickLock = new();

    private readonly int _fd;
    private readonly int _mmapSize;
    private readonly KvmRun* _run;
    // Guards the run area and the thread id against Dispose: a kick (any thread, e.g. a signal handler during
    // shutdown) never writes an unmapped page or signals a thread id that may have been reused.
    private readonly Lock _lifetime = new();
    private int _tid;
    private bool _disposed;

    public int Id { get; }

    /// <summary>The guest's physical address width (CPUID 0x80000008 EAX[7:0]), for MTRR masks.</summary>
    private readonly int _physicalAddressBits;

    public KvmVcpu(int fd, int id, int mmapSize, int physicalAddressBits = 36)
    {
        _fd = fd;
        Id = id;
        _physicalAddressBits = physicalAddressBits;
        _mmapSize = mmapSize;
        nint run = LibC.Mmap(0, (nuint)mmapSize, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fd, 0);
        if (run == LibC.MapFailed) throw new HypervisorException($"mmap of vCPU {id} run page failed", LibC.LastErrno);
        _run = (KvmRun*)run;
        EnsureKickHandler();
    }

    private static void EnsureKickHandler()
    {
        lock (s_kickLock)
        {
            // A handler (rather than the default action, which terminates) makes the signal harmless
            // outside KVM_RUN; inside it KVM returns EINTR.
            s_kickHandler ??= PosixSignalRegistration.Create((PosixSignal)KickSignal, static ctx => ctx.Cancel = true);
        }
    }

    public void AttachToCurrentThread()
    {
        lock (_lifetime)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _tid = LibC.GetTid();
        }
    }

    public void DetachFromCurrentThread()
    {
        lock (_lifetime)
        {
            _tid = 0;
            if (!_disposed) return;
        }
        Free();   // Dispose came while this thread could still be in Run: the thread frees what it kept alive
    }

    public bool IsAttached
    {
        get { lock (_lifetime) return _tid != 0; }
    }

    public VcpuExit Run()
    {
        int r = LibC.Ioctl(_fd, KvmIoctl.Run, 0);
        if (r < 0)
        {
            int errno = LibC.LastErrno;
            if (errno == LibC.EINTR)
            {
                Volatile.Write(ref _run->ImmediateExit, 0);
                return new VcpuExit { Reason = VcpuExitReason.Interrupted, RawReason = KvmExitReasons.Intr };
            }
            if (errno == LibC.EAGAIN)
                return new VcpuExit { Reason = VcpuExitReason.WaitingForStartup };
            throw new HypervisorException($"KVM_RUN on vCPU {Id} failed", errno);
        }
        var run = _run;
        switch (run->ExitReason)
        {
            case KvmExitReasons.Io:
            {
                int size = run->IoSize, count = (int)run->IoCount;
                ulong offset = run->IoDataOffset;
                long bytes = (long)size * count;
                // The data offset and length come from the kernel, but check them against the page anyway.
                if (offset >= (ulong)_mmapSize || bytes > _mmapSize - (long)offset)
                    return new VcpuExit { Reason = VcpuExitReason.Unknown, RawReason = run->ExitReason };
                return new VcpuExit
                {
                    Reason = VcpuExitReason.Io, RawReason = run->ExitReason, Port = run->IoPort,
                    IsWrite = run->IoDirection == KvmRun.IoOut, Size = size, Count = count,
                    Data = new Span<byte>((byte*)run + offset, (int)bytes),
                };
            }
            case KvmExitReasons.Mmio:
            {
                int len = (int)Math.Min(run->MmioLen, 8u);
                return new VcpuExit
                {
                    Reason = VcpuExitReason.Mmio, RawReason = run->ExitReason, Address = run->MmioPhysAddr,
                    IsWrite = run->MmioIsWrite != 0, Size = len, Count = 1, Data = new Span<byte>(run->MmioData, len),
                };
            }
            case KvmExitReasons.X86Rdmsr:
            case KvmExitReasons.X86Wrmsr:
                run->MsrError = 0; // handled: no #GP
                return new VcpuExit
                {
                    Reason = run->ExitReason == KvmExitReasons.X86Rdmsr ? VcpuExitReason.MsrRead : VcpuExitReason.MsrWrite,
                    RawReason = run->ExitReason, Address = run->MsrIndex, Size = 8, Count = 1,
                    IsWrite = run->ExitReason == KvmExitReasons.X86Wrmsr, Data = new Span<byte>(&run->MsrData, 8),
                };
            case KvmExitReasons.Hlt: return new VcpuExit { Reason = VcpuExitReason.Halt, RawReason = run->ExitReason };
            case KvmExitReasons.Shutdown: return new VcpuExit { Reason = VcpuExitReason.Shutdown, RawReason = run->ExitReason };
            case KvmExitReasons.Intr:
                Volatile.Write(ref _run->ImmediateExit, 0);
                return new VcpuExit { Reason = VcpuExitReason.Interrupted, RawReason = run->ExitReason };
            case KvmExitReasons.InternalError:
                return new VcpuExit { Reason = VcpuExitReason.InternalError, RawReason = run->ExitReason, Detail = run->InternalSuberror };
            case KvmExitReasons.FailEntry:
                return new VcpuExit { Reason = VcpuExitReason.FailEntry, RawReason = run->ExitReason, Detail = run->FailEntryReason };
            case KvmExitReasons.SystemEvent:
                return new VcpuExit
                {
                    Reason = run->SystemEventType switch
                    {
                        KvmExitReasons.SystemEventReset => VcpuExitReason.SystemReset,
                        KvmExitReasons.SystemEventShutdown => VcpuExitReason.SystemShutdown,
                        _ => VcpuExitReason.Unknown,
                    },
                    RawReason = run->ExitReason, Detail = run->SystemEventType,
                };
            default:
                return new VcpuExit { Reason = VcpuExitReason.Unknown, RawReason = run->ExitReason };
        }
    }

    public void Kick()
    {
        lock (_lifetime)
        {
            if (_disposed) return;   // nothing left to kick; the run area may be gone
            // immediate_exit covers a vCPU about to enter KVM_RUN; the signal one already inside it.
            Volatile.Write(ref _run->ImmediateExit, 1);
            // The vCPU's own thread (a reset or power-off it is handling) is not inside KVM_RUN: immediate_exit
            // is enough, and no signal means the runtime does not start thread-pool threads to dispatch it
            // while the engine is tearing the machine down.
            if (_tid != 0 && _tid != LibC.GetTid()) LibC.TgKill(LibC.GetPid(), _tid, KickSignal);
        }
    }

    public void SetBootState(in X86BootState s)
    {
        KvmSregs sregs;
        if (LibC.Ioctl(_fd, KvmIoctl.GetSregs, &sregs) < 0) throw new HypervisorException("KVM_GET_SREGS failed", LibC.LastErrno);
        sregs.Cs = ToKvm(s.Cs); sregs.Ds = ToKvm(s.Ds); sregs.Es = ToKvm(s.Es);
        sregs.Fs = ToKvm(s.Fs); sregs.Gs = ToKvm(s.Gs); sregs.Ss = ToKvm(s.Ss);
        sregs.Tr = ToKvm(s.Tr);
        sregs.Gdt = new KvmDtable { Base = s.GdtBase, Limit = s.GdtLimit };
        sregs.Idt = new KvmDtable { Base = s.IdtBase, Limit = s.IdtLimit };
        sregs.Cr0 = s.Cr0; sregs.Cr3 = s.Cr3; sregs.Cr4 = s.Cr4; sregs.Efer = s.Efer;
        if (LibC.Ioctl(_fd, KvmIoctl.SetSregs, &sregs) < 0) throw new HypervisorException("KVM_SET_SREGS failed", LibC.LastErrno);

        var regs = new KvmRegs { Rip = s.Rip, Rsp = s.Rsp, Rflags = s.Rflags | 0x2, Rax = s.Rax, Rbx = s.Rbx, Rsi = s.Rsi, Rdi = s.Rdi };
        if (LibC.Ioctl(_fd, KvmIoctl.SetRegs, &regs) < 0) throw new HypervisorException("KVM_SET_REGS failed", LibC.LastErrno);
    }

    public IReadOnlyList<UncachedRange> SetMemoryTypes(X86MemoryTypes types)
    {
        if (!TryGetMsr(_fd, Mtrrs.Cap, out ulong cap)) return types.Uncached;   // no MTRRs on this vCPU
        var msrs = Mtrrs.Plan(types, cap, _physicalAddressBits, out var undescribed);
        SetMsrs(_fd, msrs, "MTRRs");
        return undescribed;
    }

    /// <summary>KVM_GET_MSRS of one MSR; false when KVM does not have it.</summary>
    internal static bool TryGetMsr(int vcpuFd, uint index, out ulong value)
    {
        const int bytes = 8 + 16;
        byte* buffer = stackalloc byte[bytes];
        new Span<byte>(buffer, bytes).Clear();
        ((KvmMsrsHeader*)buffer)->Nmsrs = 1;
        var entry = (KvmMsrEntry*)(buffer + sizeof(KvmMsrsHeader));
        entry->Index = index;
        bool ok = LibC.Ioctl(vcpuFd, KvmIoctl.GetMsrs, buffer) == 1;
        value = ok ? entry->Data : 0;
        return ok;
    }

    /// <summary>KVM_SET_MSRS of a list; KVM stops at the first MSR it refuses, which is named in the error.</summary>
    internal static void SetMsrs(int vcpuFd, IReadOnlyList<X86Msr> msrs, string what)
    {
        int bytes = sizeof(KvmMsrsHeader) + msrs.Count * sizeof(KvmMsrEntry);
        var buffer = new byte[bytes];   // once per vCPU at build time
        fixed (byte* b = buffer)
        {
            ((KvmMsrsHeader*)b)->Nmsrs = (uint)msrs.Count;
            var entries = (KvmMsrEntry*)(b + sizeof(KvmMsrsHeader));
            for (int i = 0; i < msrs.Count; i++) entries[i] = new KvmMsrEntry { Index = msrs[i].Index, Data = msrs[i].Value };
            int set = LibC.Ioctl(vcpuFd, KvmIoctl.SetMsrs, b);
            if (set < 0) throw new HypervisorException($"KVM_SET_MSRS ({what}) failed", LibC.LastErrno);
            if (set < msrs.Count)
                throw new HypervisorException($"KVM_SET_MSRS ({what}): KVM refused MSR 0x{msrs[set].Index:X} = 0x{msrs[set].Value:X}");
        }
    }

    private static KvmSegment ToKvm(in X86Segment s) => new()
    {
        Base = s.Base, Limit = s.Limit, Selector = s.Selector, Type = s.Type, Present = B(s.Present),
        Dpl = s.Dpl, Db = B(s.Default32), S = B(s.CodeOrData), L = B(s.Long), G = B(s.Granularity4K),
    };

    private static byte B(bool b) => b ? (byte)1 : (byte)0;

    public (ulong Rip, ulong? PhysicalRip) GetInstructionPointer()
    {
        KvmRegs regs;
        KvmSregs sregs;
        if (LibC.Ioctl(_fd, KvmIoctl.GetRegs, &regs) < 0 || LibC.Ioctl(_fd, KvmIoctl.GetSregs, &sregs) < 0)
            return (0, null);
        bool longMode = (sregs.Efer & (1 << 10)) != 0 && sregs.Cs.L != 0;
        var tr = new KvmTranslation { LinearAddress = longMode ? regs.Rip : unchecked(sregs.Cs.Base + regs.Rip) };
        if (LibC.Ioctl(_fd, KvmIoctl.Translate, &tr) < 0 || tr.Valid == 0)
            return (regs.Rip, null);
        return (regs.Rip, tr.PhysicalAddress);
    }

    public void Dispose()
    {
        lock (_lifetime)
        {
            if (_disposed) return;
            _disposed = true;
            // A thread still attached may be inside Run, reading the run area and using the fd: both stay
            // until it detaches rather than be freed under it (or the fd number be reused).
            if (_tid != 0) return;
        }
        Free();
    }

    private int _freed;

    private void Free()
    {
        if (Interlocked.Exchange(ref _freed, 1) != 0) return;
        LibC.Munmap((nint)_run, (nuint)_mmapSize);
        LibC.Close(_fd);
    }
}
