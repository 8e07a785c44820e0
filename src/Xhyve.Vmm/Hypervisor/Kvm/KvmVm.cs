using Xhyve.Vmm.Native;

namespace Xhyve.Vmm.Hypervisor.Kvm;

internal sealed unsafe class KvmVm : IVirtualMachine
{
    // Where KVM keeps the real-mode TSS (3 pages) and the EPT identity map (1 page) on Intel: just below the
    // top 16 MiB of the 32-bit space, as QEMU places them, so a boot ROM of up to 16 MiB never overlaps them.
    public const ulong TssAddress = 0xFEFF_D000;
    public const ulong IdentityMapAddress = 0xFEFF_C000;

    private readonly KvmHypervisor _kvm;
    private readonly int _fd;

    public KvmVm(KvmHypervisor kvm)
    {
        _kvm = kvm;
        // A signal arriving meanwhile (the engine's handlers are registered before the VM is built) makes
        // KVM_CREATE_VM fail with EINTR having created nothing; QEMU retries it the same way.
        int errno;
        do
        {
            _fd = LibC.Ioctl(kvm.Fd, KvmIoctl.CreateVm, 0);
            errno = _fd < 0 ? LibC.LastErrno : 0;
        } while (_fd < 0 && errno == LibC.EINTR);
        if (_fd < 0) throw new HypervisorException("KVM_CREATE_VM failed", errno);
        try
        {
            Check(LibC.Ioctl(_fd, KvmIoctl.SetTssAddr, unchecked((nint)TssAddress)), "KVM_SET_TSS_ADDR");
            ulong identity = IdentityMapAddress;
            Check(LibC.Ioctl(_fd, KvmIoctl.SetIdentityMapAddr, &identity), "KVM_SET_IDENTITY_MAP_ADDR");
            Check(LibC.Ioctl(_fd, KvmIoctl.CreateIrqchip, 0), "KVM_CREATE_IRQCHIP");
            var pit = new KvmPitConfig { Flags = KvmPitConfig.SpeakerDummy };
            Check(LibC.Ioctl(_fd, KvmIoctl.CreatePit2, &pit), "KVM_CREATE_PIT2");
            if (LibC.Ioctl(kvm.Fd, KvmIoctl.CheckExtension, KvmIoctl.CapReinjectControl) > 0)
            {
                _pitSetup = new Thread(TurnOffPitReinjection, 64 * 1024) { Name = "kvm-pit setup", IsBackground = true };
                _pitSetup.Start();
            }
        }
        catch { LibC.Close(_fd); throw; }
    }

    /// <summary>
    /// The in-kernel PIT starts in reinject mode (ticks the guest missed are delivered late, one by one); KVM's API
    /// documentation recommends turning it off unless the guest is an old OS that counts PIT ticks for time (Linux 2.4).
    /// Switching it unregisters two interrupt notifiers, each waiting for an SRCU grace period: the second, right after
    /// the first, is a full one (12-17 ms on our hosts), which kvm_destroy_vm would otherwise pay when the VM ends. It
    /// runs beside the rest of the build: the mode may change while the guest runs, and only <see cref="Dispose"/>
    /// waits for it, so that the descriptor is not closed (and its number reused) under the call. Reinjection simply
    /// stays on where the switch fails.
    /// </summary>
    private void TurnOffPitReinjection()
    {
        var reinject = new KvmReinjectControl { PitReinject = 0 };
        LibC.Ioctl(_fd, KvmIoctl.ReinjectControl, &reinject);
    }

    private readonly Thread? _pitSetup;

    private static void Check(int result, string what)
    {
        if (result < 0) throw new HypervisorException($"{what} failed", LibC.LastErrno);
    }

    public void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false)
    {
        // Without the capability KVM would refuse the flag with a bare EINVAL; say what is missing instead.
        if (readOnly && LibC.Ioctl(_kvm.Fd, KvmIoctl.CheckExtension, KvmIoctl.CapReadonlyMem) <= 0)
            throw new HypervisorException("this host's KVM lacks KVM_CAP_READONLY_MEM, needed to map a boot ROM read-only");
        var region = new KvmUserspaceMemoryRegion
        {
            Slot = (uint)slot, Flags = readOnly ? KvmUserspaceMemoryRegion.FlagReadonly : 0,
            GuestPhysAddr = guestAddress, MemorySize = size, UserspaceAddr = (ulong)hostAddress,
        };
        Check(LibC.Ioctl(_fd, KvmIoctl.SetUserMemoryRegion, &region),
            $"KVM_SET_USER_MEMORY_REGION (slot {slot} at 0x{guestAddress:X}{(readOnly ? ", read-only" : "")})");
        lock (_mappedSlots) _mappedSlots.Add(slot);
    }

    public void UnmapMemory(int slot)
    {
        lock (_mappedSlots)
        {
            // KVM answers EINVAL for deleting a slot that holds nothing.
            if (!_mappedSlots.Contains(slot)) return;
            // A slot given size 0 is deleted.
            var region = new KvmUserspaceMemoryRegion { Slot = (uint)slot };
            Check(LibC.Ioctl(_fd, KvmIoctl.SetUserMemoryRegion, &region), $"KVM_SET_USER_MEMORY_REGION (removing slot {slot})");
            _mappedSlots.Remove(slot);
        }
    }

    private readonly HashSet<int> _mappedSlots = new();

    public void SetIrqLine(int gsi, bool level)
    {
        // A device of a disposed machine (a console session still typing into its UART) must not reach whatever
        // now has the descriptor number: an ioctl on it could hit the next machine's VM.
        if (_closed) return;
        var irq = new KvmIrqLevel { Irq = (uint)gsi, Level = level ? 1u : 0u };
        // A failure here is a host problem; the device cannot do anything useful with it.
        LibC.Ioctl(_fd, KvmIoctl.IrqLine, &irq);
    }

    public const int IoapicPins = 24;

    public void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi)
    {
        var entries = new List<KvmIrqRoutingEntry>();
        void Pic(int gsi, int irq) => entries.Add(new KvmIrqRoutingEntry
        {
            Gsi = (uint)gsi, Type = KvmIrqRoutingEntry.TypeIrqchip,
            Irqchip = irq < 8 ? KvmIrqRoutingEntry.PicMaster : KvmIrqRoutingEntry.PicSlave, Pin = (uint)(irq % 8),
        });
        for (int gsi = 0; gsi < IoapicPins; gsi++)
        {
            if (gsi < 16 && gsi != 2) Pic(gsi, gsi);                       // KVM's default ISA wiring
            if (picIrqForGsi.TryGetValue(gsi, out int irq)) Pic(gsi, irq);
            entries.Add(new KvmIrqRoutingEntry { Gsi = (uint)gsi, Type = KvmIrqRoutingEntry.TypeIrqchip, Irqchip = KvmIrqRoutingEntry.Ioapic, Pin = (uint)gsi });
        }
        lock (_routingLock)
        {
            _pinRoutes = entries.ToArray();
            Check(CommitRouting(), "KVM_SET_GSI_ROUTING");
        }
    }

    // KVM takes the GSI routing table only whole: the pin routes plus one MSI route per irqfd, GSIs from 24 up.
    private readonly Lock _routingLock = new();
    private KvmIrqRoutingEntry[] _pinRoutes = [];
    private readonly SortedDictionary<uint, KvmIrqRoutingEntry> _msiRoutes = new();
    private int _msiRouteLimit = -1;
    // Volatile: the interrupt calls read it without the lock.
    private volatile bool _closed;

    /// <summary>At most this many MSI routes: a GSI per vector of every device that fires one.</summary>
    public const int MaxMsiRoutes = 1024;

    private int CommitRouting()
    {
        int count = _pinRoutes.Length + _msiRoutes.Count;
        var table = new byte[sizeof(KvmIrqRoutingHeader) + count * sizeof(KvmIrqRoutingEntry)];
        fixed (byte* buffer = table)
        {
            ((KvmIrqRoutingHeader*)buffer)->Nr = (uint)count;
            var entries = new Span<KvmIrqRoutingEntry>(buffer + sizeof(KvmIrqRoutingHeader), count);
            _pinRoutes.CopyTo(entries);
            int at = _pinRoutes.Length;
            foreach (var route in _msiRoutes.Values) entries[at++] = route;
            return LibC.Ioctl(_fd, KvmIoctl.SetGsiRouting, buffer);
        }
    }

    public IMsiRoute? TryCreateMsiRoute(ulong address, uint data)
    {
        lock (_routingLock)
        {
            if (_msiRouteLimit < 0)
            {
                bool hasIrqfd = LibC.Ioctl(_kvm.Fd, KvmIoctl.CheckExtension, KvmIoctl.CapIrqfd) > 0;
                int routes = LibC.Ioctl(_kvm.Fd, KvmIoctl.CheckExtension, KvmIoctl.CapIrqRouting);
                _msiRouteLimit = hasIrqfd && routes > IoapicPins * 2 ? Math.Min(MaxMsiRoutes, routes - IoapicPins * 2) : 0;
            }
            if (_closed || _msiRoutes.Count >= _msiRouteLimit) return null;
            uint gsi = IoapicPins;
            while (_msiRoutes.ContainsKey(gsi)) gsi++;
            _msiRoutes[gsi] = MsiRoute(gsi, address, data);
            if (CommitRouting() < 0) { _msiRoutes.Remove(gsi); return null; }
            var eventFd = new EventFd();
            var irqfd = new KvmIrqfd { Fd = eventFd.Fd, Gsi = gsi };
            if (LibC.Ioctl(_fd, KvmIoctl.Irqfd, &irqfd) < 0)
            {
                eventFd.Dispose();
                _msiRoutes.Remove(gsi);
                CommitRouting();
                return null;
            }
            return new KvmMsiRoute(this, eventFd, gsi, address, data);
        }
    }

    private static KvmIrqRoutingEntry MsiRoute(uint gsi, ulong address, uint data) => new()
    {
        Gsi = gsi, Type = KvmIrqRoutingEntry.TypeMsi, MsiAddressLo = (uint)address, MsiAddressHi = (uint)(address >> 32), MsiData = data,
    };

    private bool UpdateMsiRoute(uint gsi, ulong address, uint data)
    {
        lock (_routingLock)
        {
            if (_closed || !_msiRoutes.ContainsKey(gsi)) return false;
            _msiRoutes[gsi] = MsiRoute(gsi, address, data);
            return CommitRouting() == 0;
        }
    }

    private void RemoveMsiRoute(EventFd eventFd, uint gsi)
    {
        lock (_routingLock)
        {
            if (!_closed)
            {
                var irqfd = new KvmIrqfd { Fd = eventFd.Fd, Gsi = gsi, Flags = KvmIrqfd.FlagDeassign };
                LibC.Ioctl(_fd, KvmIoctl.Irqfd, &irqfd);
                if (_msiRoutes.Remove(gsi)) CommitRouting();
            }
            eventFd.Dispose();
        }
    }

    private sealed class KvmMsiRoute(KvmVm vm, EventFd eventFd, uint gsi, ulong address, uint data) : IMsiRoute
    {
        private int _disposed;
        public ulong Address { get; private set; } = address;
        public uint Data { get; private set; } = data;

        public bool Update(ulong address, uint data)
        {
            if (!vm.UpdateMsiRoute(gsi, address, data)) return false;
            Address = address; Data = data;
            return true;
        }

        public void Signal() => eventFd.Signal();

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) vm.RemoveMsiRoute(eventFd, gsi);
        }
    }

    public void EnableUnknownMsrExits()
    {
        if (LibC.Ioctl(_kvm.Fd, KvmIoctl.CheckExtension, KvmIoctl.CapX86UserSpaceMsr) <= 0)
            throw new HypervisorException("-w: this host's KVM lacks KVM_CAP_X86_USER_SPACE_MSR");
        var cap = new KvmEnableCap { Cap = KvmIoctl.CapX86UserSpaceMsr };
        cap.Args[0] = KvmIoctl.MsrExitReasonUnknown;
        Check(LibC.Ioctl(_fd, KvmIoctl.EnableCap, &cap), "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)");
    }

    public void SignalMsi(ulong address, uint data)
    {
        if (_closed) return;   // as SetIrqLine
        var msi = new KvmMsi { AddressLo = (uint)address, AddressHi = (uint)(address >> 32), Data = data };
        // Returns 0 when the interrupt was blocked by the guest's APIC state; that is the guest's business.
        LibC.Ioctl(_fd, KvmIoctl.SignalMsi, &msi);
    }

    public bool TryAttachDoorbell(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) =>
        Doorbell(target, address, width, portIo, dataMatch, 0) == 0;

    public void DetachDoorbell(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) =>
        Doorbell(target, address, width, portIo, dataMatch, KvmIoeventfd.FlagDeassign);

    private int Doorbell(EventFd target, ulong address, int width, bool portIo, ulong? dataMatch, uint extraFlags)
    {
        var e = new KvmIoeventfd
        {
            Addr = address, Len = (uint)width, Fd = target.Fd, Datamatch = dataMatch ?? 0,
            Flags = extraFlags | (portIo ? KvmIoeventfd.FlagPio : 0) | (dataMatch != null ? KvmIoeventfd.FlagDatamatch : 0),
        };
        return LibC.Ioctl(_fd, KvmIoctl.Ioeventfd, &e);
    }

    public IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false)
    {
        int fd = LibC.Ioctl(_fd, KvmIoctl.CreateVcpu, id);
        if (fd < 0) throw new HypervisorException($"KVM_CREATE_VCPU {id} failed", LibC.LastErrno);
        try
        {
            var cpuid = CpuidTopology.ForVcpu(_kvm.SupportedCpuid(), id, vcpuCount);
            cpuid = InvariantTsc.Reconcile(cpuid, InvariantTsc.NeedsTscFreqSel(cpuid) && TrySetTscFreqSel(fd));
            SetCpuid(fd, cpuid);
            if (x2Apic) EnableX2Apic(fd);
            return new KvmVcpu(fd, id, _kvm.VcpuMmapSize, PhysicalAddressBits(cpuid));
        }
        catch { LibC.Close(fd); throw; }
    }

    /// <summary>Sets HWCR.TscFreqSel as firmware does on AMD; true when the vCPU reads it back set (KVM may refuse the
    /// write or not keep the bit: then invariant TSC is not advertised rather than contradicted).</summary>
    private static bool TrySetTscFreqSel(int vcpuFd)
    {
        if (!KvmVcpu.TryGetMsr(vcpuFd, InvariantTsc.Hwcr, out ulong hwcr)) return false;
        if ((hwcr & InvariantTsc.TscFreqSel) != 0) return true;
        try { KvmVcpu.SetMsrs(vcpuFd, [new X86Msr(InvariantTsc.Hwcr, hwcr | InvariantTsc.TscFreqSel)], "HWCR.TscFreqSel"); }
        catch (HypervisorException) { return false; }
        return KvmVcpu.TryGetMsr(vcpuFd, InvariantTsc.Hwcr, out hwcr) && (hwcr & InvariantTsc.TscFreqSel) != 0;
    }

    /// <summary>CPUID 0x80000008 EAX[7:0], or 36 bits (the architectural minimum with PAE) when absent.</summary>
    private static int PhysicalAddressBits(KvmCpuidEntry2[] cpuid) =>
        cpuid.FirstOrDefault(e => e.Function == 0x8000_0008) is { Function: 0x8000_0008 } e && (e.Eax & 0xFF) >= 32 ? (int)(e.Eax & 0xFF) : 36;

    /// <summary>IA32_APIC_BASE: EN (bit 11) and EXTD (bit 10) put the local APIC in x2APIC mode.</summary>
    private static void EnableX2Apic(int vcpuFd)
    {
        KvmSregs sregs;
        Check(LibC.Ioctl(vcpuFd, KvmIoctl.GetSregs, &sregs), "KVM_GET_SREGS");
        sregs.ApicBase |= (1UL << 11) | (1UL << 10);
        Check(LibC.Ioctl(vcpuFd, KvmIoctl.SetSregs, &sregs), "KVM_SET_SREGS (x2APIC mode)");
    }

    private static void SetCpuid(int vcpuFd, KvmCpuidEntry2[] entries)
    {
        int bytes = sizeof(KvmCpuid2Header) + entries.Length * sizeof(KvmCpuidEntry2);
        byte* buffer = stackalloc byte[bytes];
        new Span<byte>(buffer, bytes).Clear();
        ((KvmCpuid2Header*)buffer)->Nent = (uint)entries.Length;
        entries.AsSpan().CopyTo(new Span<KvmCpuidEntry2>(buffer + sizeof(KvmCpuid2Header), entries.Length));
        Check(LibC.Ioctl(vcpuFd, KvmIoctl.SetCpuid2, buffer), "KVM_SET_CPUID2");
    }

    public void Dispose()
    {
        _pitSetup?.Join();
        lock (_routingLock)
        {
            if (_closed) return;
            _closed = true;   // routes disposed later must not ioctl a descriptor number that may be reused
            LibC.Close(_fd);
        }
    }
}
