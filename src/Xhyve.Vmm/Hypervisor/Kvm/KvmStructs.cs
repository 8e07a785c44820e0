using System.Runtime.InteropServices;

namespace Xhyve.Vmm.Hypervisor.Kvm;

// Layouts of <linux/kvm.h> (x86_64). Sizes and offsets are checked against the kernel headers
// by KvmStructLayoutTests, which compiles a probe with gcc.

[StructLayout(LayoutKind.Sequential, Size = 144)]
internal struct KvmRegs
{
    public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rsp, Rbp;
    public ulong R8, R9, R10, R11, R12, R13, R14, R15;
    public ulong Rip, Rflags;
}

[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct KvmSegment
{
    [FieldOffset(0)] public ulong Base;
    [FieldOffset(8)] public uint Limit;
    [FieldOffset(12)] public ushort Selector;
    [FieldOffset(14)] public byte Type;
    [FieldOffset(15)] public byte Present;
    [FieldOffset(16)] public byte Dpl;
    [FieldOffset(17)] public byte Db;
    [FieldOffset(18)] public byte S;
    [FieldOffset(19)] public byte L;
    [FieldOffset(20)] public byte G;
    [FieldOffset(21)] public byte Avl;
    [FieldOffset(22)] public byte Unusable;
    [FieldOffset(23)] public byte Padding;
}

[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct KvmDtable
{
    [FieldOffset(0)] public ulong Base;
    [FieldOffset(8)] public ushort Limit;
}

[StructLayout(LayoutKind.Explicit, Size = 312)]
internal unsafe struct KvmSregs
{
    [FieldOffset(0)] public KvmSegment Cs;
    [FieldOffset(24)] public KvmSegment Ds;
    [FieldOffset(48)] public KvmSegment Es;
    [FieldOffset(72)] public KvmSegment Fs;
    [FieldOffset(96)] public KvmSegment Gs;
    [FieldOffset(120)] public KvmSegment Ss;
    [FieldOffset(144)] public KvmSegment Tr;
    [FieldOffset(168)] public KvmSegment Ldt;
    [FieldOffset(192)] public KvmDtable Gdt;
    [FieldOffset(208)] public KvmDtable Idt;
    [FieldOffset(224)] public ulong Cr0;
    [FieldOffset(232)] public ulong Cr2;
    [FieldOffset(240)] public ulong Cr3;
    [FieldOffset(248)] public ulong Cr4;
    [FieldOffset(256)] public ulong Cr8;
    [FieldOffset(264)] public ulong Efer;
    [FieldOffset(272)] public ulong ApicBase;
    [FieldOffset(280)] public fixed ulong InterruptBitmap[4];
}

[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct KvmUserspaceMemoryRegion
{
    /// <summary>KVM_MEM_READONLY: guest writes exit as MMIO.</summary>
    public const uint FlagReadonly = 1 << 1;
    [FieldOffset(0)] public uint Slot;
    [FieldOffset(4)] public uint Flags;
    [FieldOffset(8)] public ulong GuestPhysAddr;
    [FieldOffset(16)] public ulong MemorySize;
    [FieldOffset(24)] public ulong UserspaceAddr;
}

[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct KvmCpuidEntry2
{
    [FieldOffset(0)] public uint Function;
    [FieldOffset(4)] public uint Index;
    [FieldOffset(8)] public uint Flags;
    [FieldOffset(12)] public uint Eax;
    [FieldOffset(16)] public uint Ebx;
    [FieldOffset(20)] public uint Ecx;
    [FieldOffset(24)] public uint Edx;
    public const uint FlagSignificantIndex = 1;
}

/// <summary>struct kvm_msr_entry: one MSR of a KVM_GET_MSRS / KVM_SET_MSRS list.</summary>
[StructLayout(LayoutKind.Explicit, Size = 16)]
internal struct KvmMsrEntry
{
    [FieldOffset(0)] public uint Index;
    [FieldOffset(8)] public ulong Data;
}

/// <summary>Header of struct kvm_msrs; the entries follow it.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct KvmMsrsHeader
{
    [FieldOffset(0)] public uint Nmsrs;
}

/// <summary>Header of struct kvm_cpuid2; the entries follow it.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct KvmCpuid2Header
{
    [FieldOffset(0)] public uint Nent;
}

[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct KvmPitConfig
{
    [FieldOffset(0)] public uint Flags;
    public const uint SpeakerDummy = 1;
}

/// <summary>struct kvm_reinject_control: whether the in-kernel PIT makes up for ticks the guest did not take.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct KvmReinjectControl
{
    [FieldOffset(0)] public byte PitReinject;
}

[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct KvmIrqLevel
{
    [FieldOffset(0)] public uint Irq;
    [FieldOffset(4)] public uint Level;
}

[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct KvmMsi
{
    [FieldOffset(0)] public uint AddressLo;
    [FieldOffset(4)] public uint AddressHi;
    [FieldOffset(8)] public uint Data;
    [FieldOffset(12)] public uint Flags;
    [FieldOffset(16)] public uint DevId;
}

/// <summary>struct kvm_ioeventfd: a guest write to (addr, len[, datamatch]) signals fd instead of exiting.</summary>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct KvmIoeventfd
{
    [FieldOffset(0)] public ulong Datamatch;
    [FieldOffset(8)] public ulong Addr;
    [FieldOffset(16)] public uint Len;
    [FieldOffset(20)] public int Fd;
    [FieldOffset(24)] public uint Flags;
    public const uint FlagDatamatch = 1, FlagPio = 2, FlagDeassign = 4;
}

/// <summary>struct kvm_irqfd: signalling fd injects GSI gsi (here an MSI route) inside KVM.</summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal struct KvmIrqfd
{
    [FieldOffset(0)] public int Fd;
    [FieldOffset(4)] public uint Gsi;
    [FieldOffset(8)] public uint Flags;
    [FieldOffset(12)] public int ResampleFd;
    public const uint FlagDeassign = 1;
}

/// <summary>struct kvm_irq_routing_entry with the irqchip and msi members of its union.</summary>
[StructLayout(LayoutKind.Explicit, Size = 48)]
internal struct KvmIrqRoutingEntry
{
    [FieldOffset(0)] public uint Gsi;
    [FieldOffset(4)] public uint Type;
    [FieldOffset(8)] public uint Flags;
    [FieldOffset(16)] public uint Irqchip;
    [FieldOffset(20)] public uint Pin;
    [FieldOffset(16)] public uint MsiAddressLo;
    [FieldOffset(20)] public uint MsiAddressHi;
    [FieldOffset(24)] public uint MsiData;
    public const uint TypeIrqchip = 1, TypeMsi = 2;
    public const uint PicMaster = 0, PicSlave = 1, Ioapic = 2;
}

/// <summary>Header of struct kvm_irq_routing; the entries follow it.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
internal struct KvmIrqRoutingHeader
{
    [FieldOffset(0)] public uint Nr;
    [FieldOffset(4)] public uint Flags;
}

[StructLayout(LayoutKind.Explicit, Size = 104)]
internal unsafe struct KvmEnableCap
{
    [FieldOffset(0)] public uint Cap;
    [FieldOffset(4)] public uint Flags;
    [FieldOffset(8)] public fixed ulong Args[4];
}

[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct KvmTranslation
{
    [FieldOffset(0)] public ulong LinearAddress;
    [FieldOffset(8)] public ulong PhysicalAddress;
    [FieldOffset(16)] public byte Valid;
    [FieldOffset(17)] public byte Writeable;
    [FieldOffset(18)] public byte Usermode;
}

/// <summary>The fixed head of struct kvm_run (the page shared with the kernel) and its exit union.</summary>
[StructLayout(LayoutKind.Explicit, Size = 304)]
internal unsafe struct KvmRun
{
    [FieldOffset(0)] public byte RequestInterruptWindow;
    [FieldOffset(1)] public byte ImmediateExit;
    [FieldOffset(8)] public uint ExitReason;
    [FieldOffset(12)] public byte ReadyForInterruptInjection;
    [FieldOffset(13)] public byte IfFlag;
    [FieldOffset(16)] public ulong Cr8;
    [FieldOffset(24)] public ulong ApicBase;

    // union { struct io; struct mmio; struct internal; struct fail_entry; struct system_event; ... } at 32
    [FieldOffset(32)] public byte IoDirection;
    [FieldOffset(33)] public byte IoSize;
    [FieldOffset(34)] public ushort IoPort;
    [FieldOffset(36)] public uint IoCount;
    [FieldOffset(40)] public ulong IoDataOffset;

    [FieldOffset(32)] public ulong MmioPhysAddr;
    [FieldOffset(40)] public fixed byte MmioData[8];
    [FieldOffset(48)] public uint MmioLen;
    [FieldOffset(52)] public byte MmioIsWrite;

    [FieldOffset(32)] public uint InternalSuberror;
    [FieldOffset(36)] public uint InternalNdata;
    [FieldOffset(40)] public fixed ulong InternalData[16];

    [FieldOffset(32)] public ulong FailEntryReason;
    [FieldOffset(40)] public uint FailEntryCpu;

    [FieldOffset(32)] public uint SystemEventType;

    [FieldOffset(32)] public byte MsrError;
    [FieldOffset(40)] public uint MsrReason;
    [FieldOffset(44)] public uint MsrIndex;
    [FieldOffset(48)] public ulong MsrData;

    public const int IoOut = 1;
}

internal static class KvmExitReasons
{
    public const uint Unknown = 0, Exception = 1, Io = 2, Hypercall = 3, Debug = 4, Hlt = 5, Mmio = 6,
        IrqWindowOpen = 7, Shutdown = 8, FailEntry = 9, Intr = 10, InternalError = 17, SystemEvent = 24,
        X86Rdmsr = 29, X86Wrmsr = 30;
    public const uint SystemEventShutdown = 1, SystemEventReset = 2, SystemEventCrash = 3;
}

/// <summary>KVM ioctl request numbers, encoded as the kernel's _IO/_IOR/_IOW/_IOWR macros do.</summary>
internal static class KvmIoctl
{
    private const uint KvmIo = 0xAE;
    private static nuint Io(uint nr) => Encode(0, nr, 0);
    private static nuint Ior(uint nr, int size) => Encode(2, nr, size);
    private static nuint Iow(uint nr, int size) => Encode(1, nr, size);
    private static nuint Iowr(uint nr, int size) => Encode(3, nr, size);
    internal static nuint Encode(uint dir, uint nr, int size) => (nuint)((dir << 30) | ((uint)size << 16) | (KvmIo << 8) | nr);

    public static readonly nuint GetApiVersion = Io(0x00);
    public static readonly nuint CreateVm = Io(0x01);
    public static readonly nuint CheckExtension = Io(0x03);
    public static readonly nuint GetVcpuMmapSize = Io(0x04);
    public static readonly nuint GetSupportedCpuid = Iowr(0x05, 8);
    public static readonly nuint CreateVcpu = Io(0x41);
    public static readonly nuint SetUserMemoryRegion = Iow(0x46, 32);
    public static readonly nuint SetTssAddr = Io(0x47);
    public static readonly nuint SetIdentityMapAddr = Iow(0x48, 8);
    public static readonly nuint CreateIrqchip = Io(0x60);
    public static readonly nuint IrqLine = Iow(0x61, 8);
    public static readonly nuint CreatePit2 = Iow(0x77, 64);
    public static readonly nuint ReinjectControl = Io(0x71);
    public static readonly nuint Run = Io(0x80);
    public static readonly nuint GetRegs = Ior(0x81, 144);
    public static readonly nuint SetRegs = Iow(0x82, 144);
    public static readonly nuint GetSregs = Ior(0x83, 312);
    public static readonly nuint SetSregs = Iow(0x84, 312);
    public static readonly nuint Translate = Iowr(0x85, 24);
    public static readonly nuint SetCpuid2 = Iow(0x90, 8);
    public static readonly nuint GetMsrs = Iowr(0x88, 8);
    public static readonly nuint SetMsrs = Iow(0x89, 8);
    public static readonly nuint SignalMsi = Iow(0xA5, 32);
    public static readonly nuint EnableCap = Iow(0xA3, 104);
    public static readonly nuint SetGsiRouting = Iow(0x6A, 8);
    public static readonly nuint Ioeventfd = Iow(0x79, 64);
    public static readonly nuint Irqfd = Iow(0x76, 32);

    public const int ApiVersion = 12;
    public const int CapIrqchip = 0, CapNrVcpus = 9, CapMaxVcpus = 66, CapImmediateExit = 136, CapPit2 = 33, CapReinjectControl = 24, CapSignalMsi = 77, CapX86UserSpaceMsr = 188, CapIoeventfd = 36,
        CapIrqRouting = 25, CapIrqfd = 32, CapReadonlyMem = 81;
    public const ulong MsrExitReasonUnknown = 1 << 1;
}
