using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Hypervisor.Kvm;
using Xhyve.Vmm.Native;
using Xhyve.Vmm.Tests.Fakes;

namespace Xhyve.Vmm.Tests.Hypervisor;

/// <summary>
/// Compiles a probe against the installed &lt;linux/kvm.h&gt; and checks every struct size, field
/// offset and ioctl number the backend uses against the kernel's own definitions.
/// </summary>
public sealed class KvmStructLayoutTests
{
    private static readonly Lazy<Dictionary<string, long>> Probe = new(RunProbe);

    private const string ProbeSource = """
        #include <stdio.h>
        #include <stddef.h>
        #include <linux/kvm.h>
        #include <sys/uio.h>
        #include <sys/stat.h>
        #include <net/if.h>
        #include <termios.h>
        #include <linux/if_tun.h>
        #include <linux/virtio_net.h>
        #define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t));
        #define O(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f));
        #define I(n) printf("ioctl %s %lu\n", #n, (unsigned long)(n));
        int main(void) {
          S(kvm_regs) S(kvm_sregs) S(kvm_segment) S(kvm_dtable) S(kvm_userspace_memory_region)
          S(kvm_cpuid_entry2) S(kvm_cpuid2) S(kvm_pit_config) S(kvm_reinject_control) S(kvm_irq_level) S(kvm_translation) S(kvm_msi) S(kvm_enable_cap) S(kvm_irq_routing_entry) S(kvm_irq_routing) S(kvm_ioeventfd) S(kvm_irqfd) S(iovec) S(stat) S(ifreq) S(virtio_net_hdr) S(virtio_net_hdr_mrg_rxbuf)
          O(ifreq, ifr_flags)
          O(kvm_regs, rip) O(kvm_regs, rflags) O(kvm_regs, rsi)
          O(kvm_segment, selector) O(kvm_segment, type) O(kvm_segment, present) O(kvm_segment, dpl)
          O(kvm_segment, db) O(kvm_segment, s) O(kvm_segment, l) O(kvm_segment, g) O(kvm_segment, unusable)
          O(kvm_sregs, tr) O(kvm_sregs, gdt) O(kvm_sregs, idt) O(kvm_sregs, cr0) O(kvm_sregs, cr3)
          O(kvm_sregs, cr4) O(kvm_sregs, efer) O(kvm_sregs, apic_base) O(kvm_sregs, interrupt_bitmap)
          O(kvm_userspace_memory_region, guest_phys_addr) O(kvm_userspace_memory_region, userspace_addr)
          O(kvm_cpuid_entry2, eax) O(kvm_cpuid_entry2, edx) O(kvm_translation, valid) O(kvm_msi, data) O(kvm_msi, devid) O(kvm_enable_cap, args) O(kvm_irq_routing_entry, u.irqchip.irqchip) O(kvm_irq_routing_entry, u.irqchip.pin) O(kvm_irq_routing, entries) O(kvm_ioeventfd, addr) O(kvm_ioeventfd, len) O(kvm_ioeventfd, fd) O(kvm_ioeventfd, flags) O(kvm_irqfd, fd) O(kvm_irqfd, gsi) O(kvm_irqfd, flags) O(kvm_irqfd, resamplefd) O(kvm_irq_routing_entry, u.msi.address_lo) O(kvm_irq_routing_entry, u.msi.address_hi) O(kvm_irq_routing_entry, u.msi.data) O(iovec, iov_len) O(stat, st_mode) O(stat, st_size) O(stat, st_blocks) O(kvm_run, msr.error) O(kvm_run, msr.reason) O(kvm_run, msr.index) O(kvm_run, msr.data)
          O(kvm_run, immediate_exit) O(kvm_run, exit_reason) O(kvm_run, io.direction) O(kvm_run, io.size)
          O(kvm_run, io.port) O(kvm_run, io.count) O(kvm_run, io.data_offset) O(kvm_run, mmio.phys_addr)
          O(kvm_run, mmio.data) O(kvm_run, mmio.len) O(kvm_run, mmio.is_write) O(kvm_run, internal.suberror)
          O(kvm_run, internal.data) O(kvm_run, fail_entry.hardware_entry_failure_reason) O(kvm_run, system_event.type)
          I(KVM_GET_API_VERSION) I(KVM_CREATE_VM) I(KVM_CHECK_EXTENSION) I(KVM_GET_VCPU_MMAP_SIZE)
          I(KVM_GET_SUPPORTED_CPUID) I(KVM_CREATE_VCPU) I(KVM_SET_USER_MEMORY_REGION) I(KVM_SET_TSS_ADDR)
          I(KVM_SET_IDENTITY_MAP_ADDR) I(KVM_CREATE_IRQCHIP) I(KVM_IRQ_LINE) I(KVM_CREATE_PIT2) I(KVM_REINJECT_CONTROL) I(KVM_CAP_REINJECT_CONTROL) I(KVM_RUN)
          I(KVM_GET_REGS) I(KVM_SET_REGS) I(KVM_GET_SREGS) I(KVM_SET_SREGS) I(KVM_TRANSLATE) I(KVM_SET_CPUID2) I(KVM_SIGNAL_MSI) I(KVM_CAP_SIGNAL_MSI) I(KVM_ENABLE_CAP) I(KVM_SET_GSI_ROUTING) I(KVM_IRQ_ROUTING_IRQCHIP) I(KVM_IRQCHIP_PIC_SLAVE) I(KVM_IRQCHIP_IOAPIC) I(KVM_CAP_X86_USER_SPACE_MSR) I(KVM_MSR_EXIT_REASON_UNKNOWN) I(KVM_EXIT_X86_RDMSR) I(KVM_EXIT_X86_WRMSR) I(KVM_IOEVENTFD) I(KVM_CAP_IOEVENTFD) I(KVM_IOEVENTFD_FLAG_DATAMATCH) I(KVM_IOEVENTFD_FLAG_PIO) I(KVM_IOEVENTFD_FLAG_DEASSIGN) I(KVM_IRQFD) I(KVM_CAP_IRQFD) I(KVM_CAP_IRQ_ROUTING) I(KVM_IRQFD_FLAG_DEASSIGN) I(KVM_IRQ_ROUTING_MSI)
          I(KVM_CAP_IRQCHIP) I(KVM_CAP_NR_VCPUS) I(KVM_CAP_MAX_VCPUS) I(KVM_CAP_IMMEDIATE_EXIT)
          I(KVM_EXIT_IO) I(KVM_EXIT_MMIO) I(KVM_EXIT_HLT) I(KVM_EXIT_SHUTDOWN) I(KVM_EXIT_FAIL_ENTRY)
          I(KVM_EXIT_INTR) I(KVM_EXIT_INTERNAL_ERROR) I(KVM_EXIT_SYSTEM_EVENT) I(KVM_SYSTEM_EVENT_RESET)
          I(KVM_SYSTEM_EVENT_SHUTDOWN) I(KVM_PIT_SPEAKER_DUMMY)
          S(termios) O(termios, c_oflag) O(termios, c_line) O(termios, c_cc) O(termios, c_ispeed) O(termios, c_ospeed) I(TCSANOW) I(OPOST)
          I(TUNSETIFF) I(TUNSETOFFLOAD) I(TUNSETVNETHDRSZ) I(TUNGETFEATURES) I(IFF_TAP) I(IFF_NO_PI) I(IFF_VNET_HDR)
          I(TUN_F_CSUM) I(TUN_F_TSO4) I(TUN_F_TSO6) I(TUN_F_TSO_ECN)
          I(VIRTIO_NET_F_CSUM) I(VIRTIO_NET_F_GUEST_CSUM) I(VIRTIO_NET_F_MAC) I(VIRTIO_NET_F_GUEST_TSO4) I(VIRTIO_NET_F_GUEST_TSO6)
          I(VIRTIO_NET_F_GUEST_ECN) I(VIRTIO_NET_F_HOST_TSO4) I(VIRTIO_NET_F_HOST_TSO6) I(VIRTIO_NET_F_HOST_ECN)
          I(VIRTIO_NET_F_MRG_RXBUF) I(VIRTIO_NET_F_STATUS) I(VIRTIO_NET_F_CTRL_VQ) I(VIRTIO_NET_F_CTRL_RX)
          I(VIRTIO_NET_F_CTRL_MAC_ADDR) I(VIRTIO_NET_S_LINK_UP) I(VIRTIO_NET_HDR_F_NEEDS_CSUM) I(VIRTIO_NET_HDR_F_DATA_VALID)
          I(VIRTIO_NET_HDR_GSO_NONE) I(VIRTIO_NET_HDR_GSO_TCPV4) I(VIRTIO_NET_HDR_GSO_TCPV6) I(VIRTIO_NET_HDR_GSO_ECN)
          I(VIRTIO_NET_CTRL_RX) I(VIRTIO_NET_CTRL_RX_PROMISC) I(VIRTIO_NET_CTRL_RX_ALLMULTI) I(VIRTIO_NET_CTRL_MAC)
          I(VIRTIO_NET_CTRL_MAC_TABLE_SET) I(VIRTIO_NET_CTRL_MAC_ADDR_SET) I(VIRTIO_NET_CTRL_ANNOUNCE) I(VIRTIO_NET_CTRL_ANNOUNCE_ACK)
          O(virtio_net_config, status) O(virtio_net_hdr_mrg_rxbuf, num_buffers) O(virtio_net_hdr, csum_start) O(virtio_net_hdr, gso_size)
          return 0;
        }
        """;

    private static Dictionary<string, long> RunProbe()
    {
        string dir = Directory.CreateTempSubdirectory("kvm-probe").FullName;
        File.WriteAllText(Path.Combine(dir, "probe.c"), ProbeSource);
        var (code, _, stderr) = HostTools.Run("gcc", "-o probe probe.c", workingDirectory: dir);
        Assert.True(code == 0, $"gcc could not build the <linux/kvm.h> probe (is linux-libc-dev installed?): {stderr}");
        var (runCode, stdout, _) = HostTools.Run(Path.Combine(dir, "probe"), "");
        Assert.Equal(0, runCode);
        Directory.Delete(dir, true);
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' '))
            .ToDictionary(p => p[0] + " " + p[1], p => long.Parse(p[2]));
    }

    private static long K(string key) => Probe.Value[key];

    [Theory]
    [InlineData(typeof(KvmRegs), "kvm_regs")]
    [InlineData(typeof(KvmSregs), "kvm_sregs")]
    [InlineData(typeof(KvmSegment), "kvm_segment")]
    [InlineData(typeof(KvmDtable), "kvm_dtable")]
    [InlineData(typeof(KvmUserspaceMemoryRegion), "kvm_userspace_memory_region")]
    [InlineData(typeof(KvmCpuidEntry2), "kvm_cpuid_entry2")]
    [InlineData(typeof(KvmCpuid2Header), "kvm_cpuid2")]
    [InlineData(typeof(KvmPitConfig), "kvm_pit_config")]
    [InlineData(typeof(KvmReinjectControl), "kvm_reinject_control")]
    [InlineData(typeof(KvmIrqLevel), "kvm_irq_level")]
    [InlineData(typeof(KvmTranslation), "kvm_translation")]
    [InlineData(typeof(KvmMsi), "kvm_msi")]
    [InlineData(typeof(KvmEnableCap), "kvm_enable_cap")]
    [InlineData(typeof(KvmIrqRoutingEntry), "kvm_irq_routing_entry")]
    [InlineData(typeof(KvmIrqRoutingHeader), "kvm_irq_routing")]
    [InlineData(typeof(KvmIoeventfd), "kvm_ioeventfd")]
    [InlineData(typeof(KvmIrqfd), "kvm_irqfd")]
    [InlineData(typeof(Xhyve.Vmm.Storage.IoBuffer), "iovec")]
    [InlineData(typeof(Xhyve.Vmm.Native.Stat), "stat")]
    [InlineData(typeof(Xhyve.Vmm.Native.IfReq), "ifreq")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "termios")]
    public void StructSize_MatchesKernelHeader(Type type, string kernelName)
    {
        Assert.Equal(K($"sizeof {kernelName}"), Marshal.SizeOf(type));
    }

    [Theory]
    [InlineData(typeof(KvmRegs), "Rip", "kvm_regs.rip")]
    [InlineData(typeof(KvmRegs), "Rflags", "kvm_regs.rflags")]
    [InlineData(typeof(KvmRegs), "Rsi", "kvm_regs.rsi")]
    [InlineData(typeof(KvmSegment), "Selector", "kvm_segment.selector")]
    [InlineData(typeof(KvmSegment), "Type", "kvm_segment.type")]
    [InlineData(typeof(KvmSegment), "Present", "kvm_segment.present")]
    [InlineData(typeof(KvmSegment), "Dpl", "kvm_segment.dpl")]
    [InlineData(typeof(KvmSegment), "Db", "kvm_segment.db")]
    [InlineData(typeof(KvmSegment), "S", "kvm_segment.s")]
    [InlineData(typeof(KvmSegment), "L", "kvm_segment.l")]
    [InlineData(typeof(KvmSegment), "G", "kvm_segment.g")]
    [InlineData(typeof(KvmSegment), "Unusable", "kvm_segment.unusable")]
    [InlineData(typeof(KvmSregs), "Tr", "kvm_sregs.tr")]
    [InlineData(typeof(KvmSregs), "Gdt", "kvm_sregs.gdt")]
    [InlineData(typeof(KvmSregs), "Idt", "kvm_sregs.idt")]
    [InlineData(typeof(KvmSregs), "Cr0", "kvm_sregs.cr0")]
    [InlineData(typeof(KvmSregs), "Cr3", "kvm_sregs.cr3")]
    [InlineData(typeof(KvmSregs), "Cr4", "kvm_sregs.cr4")]
    [InlineData(typeof(KvmSregs), "Efer", "kvm_sregs.efer")]
    [InlineData(typeof(KvmSregs), "ApicBase", "kvm_sregs.apic_base")]
    [InlineData(typeof(KvmSregs), "InterruptBitmap", "kvm_sregs.interrupt_bitmap")]
    [InlineData(typeof(KvmUserspaceMemoryRegion), "GuestPhysAddr", "kvm_userspace_memory_region.guest_phys_addr")]
    [InlineData(typeof(KvmUserspaceMemoryRegion), "UserspaceAddr", "kvm_userspace_memory_region.userspace_addr")]
    [InlineData(typeof(KvmCpuidEntry2), "Eax", "kvm_cpuid_entry2.eax")]
    [InlineData(typeof(KvmCpuidEntry2), "Edx", "kvm_cpuid_entry2.edx")]
    [InlineData(typeof(KvmTranslation), "Valid", "kvm_translation.valid")]
    [InlineData(typeof(KvmMsi), "Data", "kvm_msi.data")]
    [InlineData(typeof(KvmMsi), "DevId", "kvm_msi.devid")]
    [InlineData(typeof(KvmEnableCap), "Args", "kvm_enable_cap.args")]
    [InlineData(typeof(KvmIrqRoutingEntry), "Irqchip", "kvm_irq_routing_entry.u.irqchip.irqchip")]
    [InlineData(typeof(KvmIrqRoutingEntry), "Pin", "kvm_irq_routing_entry.u.irqchip.pin")]
    [InlineData(typeof(KvmIoeventfd), "Addr", "kvm_ioeventfd.addr")]
    [InlineData(typeof(KvmIoeventfd), "Len", "kvm_ioeventfd.len")]
    [InlineData(typeof(KvmIoeventfd), "Fd", "kvm_ioeventfd.fd")]
    [InlineData(typeof(KvmIoeventfd), "Flags", "kvm_ioeventfd.flags")]
    [InlineData(typeof(KvmIrqfd), "Fd", "kvm_irqfd.fd")]
    [InlineData(typeof(KvmIrqfd), "Gsi", "kvm_irqfd.gsi")]
    [InlineData(typeof(KvmIrqfd), "Flags", "kvm_irqfd.flags")]
    [InlineData(typeof(KvmIrqfd), "ResampleFd", "kvm_irqfd.resamplefd")]
    [InlineData(typeof(KvmIrqRoutingEntry), "MsiAddressLo", "kvm_irq_routing_entry.u.msi.address_lo")]
    [InlineData(typeof(KvmIrqRoutingEntry), "MsiAddressHi", "kvm_irq_routing_entry.u.msi.address_hi")]
    [InlineData(typeof(KvmIrqRoutingEntry), "MsiData", "kvm_irq_routing_entry.u.msi.data")]
    [InlineData(typeof(Xhyve.Vmm.Storage.IoBuffer), "Length", "iovec.iov_len")]
    [InlineData(typeof(Xhyve.Vmm.Native.Stat), "Mode", "stat.st_mode")]
    [InlineData(typeof(Xhyve.Vmm.Native.Stat), "Size", "stat.st_size")]
    [InlineData(typeof(Xhyve.Vmm.Native.Stat), "Blocks", "stat.st_blocks")]
    [InlineData(typeof(KvmRun), "MsrError", "kvm_run.msr.error")]
    [InlineData(typeof(KvmRun), "MsrReason", "kvm_run.msr.reason")]
    [InlineData(typeof(KvmRun), "MsrIndex", "kvm_run.msr.index")]
    [InlineData(typeof(KvmRun), "MsrData", "kvm_run.msr.data")]
    [InlineData(typeof(KvmRun), "ImmediateExit", "kvm_run.immediate_exit")]
    [InlineData(typeof(KvmRun), "ExitReason", "kvm_run.exit_reason")]
    [InlineData(typeof(KvmRun), "IoDirection", "kvm_run.io.direction")]
    [InlineData(typeof(KvmRun), "IoSize", "kvm_run.io.size")]
    [InlineData(typeof(KvmRun), "IoPort", "kvm_run.io.port")]
    [InlineData(typeof(KvmRun), "IoCount", "kvm_run.io.count")]
    [InlineData(typeof(KvmRun), "IoDataOffset", "kvm_run.io.data_offset")]
    [InlineData(typeof(KvmRun), "MmioPhysAddr", "kvm_run.mmio.phys_addr")]
    [InlineData(typeof(KvmRun), "MmioData", "kvm_run.mmio.data")]
    [InlineData(typeof(KvmRun), "MmioLen", "kvm_run.mmio.len")]
    [InlineData(typeof(KvmRun), "MmioIsWrite", "kvm_run.mmio.is_write")]
    [InlineData(typeof(KvmRun), "InternalSuberror", "kvm_run.internal.suberror")]
    [InlineData(typeof(KvmRun), "InternalData", "kvm_run.internal.data")]
    [InlineData(typeof(KvmRun), "FailEntryReason", "kvm_run.fail_entry.hardware_entry_failure_reason")]
    [InlineData(typeof(KvmRun), "SystemEventType", "kvm_run.system_event.type")]
    [InlineData(typeof(Xhyve.Vmm.Native.IfReq), "Flags", "ifreq.ifr_flags")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "OFlag", "termios.c_oflag")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "Line", "termios.c_line")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "Cc", "termios.c_cc")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "ISpeed", "termios.c_ispeed")]
    [InlineData(typeof(Xhyve.Vmm.Native.Termios), "OSpeed", "termios.c_ospeed")]
    public void FieldOffset_MatchesKernelHeader(Type type, string field, string kernelField)
    {
        Assert.Equal(K($"offset {kernelField}"), (long)Marshal.OffsetOf(type, field));
    }

    public static TheoryData<string, ulong> Ioctls => new()
    {
        { "TCSANOW", (ulong)Xhyve.Vmm.Native.LibC.TCSANOW }, { "OPOST", Xhyve.Vmm.Native.LibC.OPOST },
        { "KVM_GET_API_VERSION", KvmIoctl.GetApiVersion }, { "KVM_CREATE_VM", KvmIoctl.CreateVm },
        { "KVM_CHECK_EXTENSION", KvmIoctl.CheckExtension }, { "KVM_GET_VCPU_MMAP_SIZE", KvmIoctl.GetVcpuMmapSize },
        { "KVM_GET_SUPPORTED_CPUID", KvmIoctl.GetSupportedCpuid }, { "KVM_CREATE_VCPU", KvmIoctl.CreateVcpu },
        { "KVM_SET_USER_MEMORY_REGION", KvmIoctl.SetUserMemoryRegion }, { "KVM_SET_TSS_ADDR", KvmIoctl.SetTssAddr },
        { "KVM_SET_IDENTITY_MAP_ADDR", KvmIoctl.SetIdentityMapAddr }, { "KVM_CREATE_IRQCHIP", KvmIoctl.CreateIrqchip },
        { "KVM_IRQ_LINE", KvmIoctl.IrqLine }, { "KVM_CREATE_PIT2", KvmIoctl.CreatePit2 },
        { "KVM_REINJECT_CONTROL", KvmIoctl.ReinjectControl }, { "KVM_CAP_REINJECT_CONTROL", KvmIoctl.CapReinjectControl }, { "KVM_RUN", KvmIoctl.Run },
        { "KVM_GET_REGS", KvmIoctl.GetRegs }, { "KVM_SET_REGS", KvmIoctl.SetRegs }, { "KVM_GET_SREGS", KvmIoctl.GetSregs },
        { "KVM_SET_SREGS", KvmIoctl.SetSregs }, { "KVM_TRANSLATE", KvmIoctl.Translate }, { "KVM_SET_CPUID2", KvmIoctl.SetCpuid2 },
        { "KVM_SIGNAL_MSI", KvmIoctl.SignalMsi }, { "KVM_CAP_SIGNAL_MSI", KvmIoctl.CapSignalMsi },
        { "KVM_ENABLE_CAP", KvmIoctl.EnableCap }, { "KVM_SET_GSI_ROUTING", KvmIoctl.SetGsiRouting },
        { "KVM_IRQ_ROUTING_IRQCHIP", KvmIrqRoutingEntry.TypeIrqchip }, { "KVM_IRQCHIP_PIC_SLAVE", KvmIrqRoutingEntry.PicSlave },
        { "KVM_IRQCHIP_IOAPIC", KvmIrqRoutingEntry.Ioapic }, { "KVM_CAP_X86_USER_SPACE_MSR", KvmIoctl.CapX86UserSpaceMsr },
        { "KVM_MSR_EXIT_REASON_UNKNOWN", KvmIoctl.MsrExitReasonUnknown },
        { "KVM_IOEVENTFD", KvmIoctl.Ioeventfd }, { "KVM_CAP_IOEVENTFD", KvmIoctl.CapIoeventfd },
        { "KVM_IOEVENTFD_FLAG_DATAMATCH", KvmIoeventfd.FlagDatamatch }, { "KVM_IOEVENTFD_FLAG_PIO", KvmIoeventfd.FlagPio },
        { "KVM_IOEVENTFD_FLAG_DEASSIGN", KvmIoeventfd.FlagDeassign },
        { "KVM_IRQFD", KvmIoctl.Irqfd }, { "KVM_CAP_IRQFD", KvmIoctl.CapIrqfd }, { "KVM_CAP_IRQ_ROUTING", KvmIoctl.CapIrqRouting },
        { "KVM_IRQFD_FLAG_DEASSIGN", KvmIrqfd.FlagDeassign }, { "KVM_IRQ_ROUTING_MSI", KvmIrqRoutingEntry.TypeMsi },
        { "KVM_EXIT_X86_RDMSR", KvmExitReasons.X86Rdmsr }, { "KVM_EXIT_X86_WRMSR", KvmExitReasons.X86Wrmsr },
        { "KVM_CAP_IRQCHIP", KvmIoctl.CapIrqchip }, { "KVM_CAP_NR_VCPUS", KvmIoctl.CapNrVcpus },
        { "KVM_CAP_MAX_VCPUS", KvmIoctl.CapMaxVcpus }, { "KVM_CAP_IMMEDIATE_EXIT", KvmIoctl.CapImmediateExit },
        { "KVM_EXIT_IO", KvmExitReasons.Io }, { "KVM_EXIT_MMIO", KvmExitReasons.Mmio }, { "KVM_EXIT_HLT", KvmExitReasons.Hlt },
        { "KVM_EXIT_SHUTDOWN", KvmExitReasons.Shutdown }, { "KVM_EXIT_FAIL_ENTRY", KvmExitReasons.FailEntry },
        { "KVM_EXIT_INTR", KvmExitReasons.Intr }, { "KVM_EXIT_INTERNAL_ERROR", KvmExitReasons.InternalError },
        { "KVM_EXIT_SYSTEM_EVENT", KvmExitReasons.SystemEvent }, { "KVM_SYSTEM_EVENT_RESET", KvmExitReasons.SystemEventReset },
        { "KVM_SYSTEM_EVENT_SHUTDOWN", KvmExitReasons.SystemEventShutdown }, { "KVM_PIT_SPEAKER_DUMMY", KvmPitConfig.SpeakerDummy },
        { "TUNSETIFF", LibC.TUNSETIFF }, { "TUNSETOFFLOAD", LibC.TUNSETOFFLOAD }, { "TUNSETVNETHDRSZ", LibC.TUNSETVNETHDRSZ },
        { "TUNGETFEATURES", LibC.TUNGETFEATURES }, { "IFF_TAP", (ulong)LibC.IFF_TAP }, { "IFF_NO_PI", (ulong)LibC.IFF_NO_PI },
        { "IFF_VNET_HDR", (ulong)LibC.IFF_VNET_HDR }, { "TUN_F_CSUM", LibC.TUN_F_CSUM }, { "TUN_F_TSO4", LibC.TUN_F_TSO4 },
        { "TUN_F_TSO6", LibC.TUN_F_TSO6 }, { "TUN_F_TSO_ECN", LibC.TUN_F_TSO_ECN },
        // Feature bit numbers (the header's values), and the header's flag and GSO values.
        { "VIRTIO_NET_F_CSUM", Bit(NetFeatures.Csum) }, { "VIRTIO_NET_F_GUEST_CSUM", Bit(NetFeatures.GuestCsum) },
        { "VIRTIO_NET_F_MAC", Bit(NetFeatures.Mac) }, { "VIRTIO_NET_F_GUEST_TSO4", Bit(NetFeatures.GuestTso4) },
        { "VIRTIO_NET_F_GUEST_TSO6", Bit(NetFeatures.GuestTso6) }, { "VIRTIO_NET_F_GUEST_ECN", Bit(NetFeatures.GuestEcn) },
        { "VIRTIO_NET_F_HOST_TSO4", Bit(NetFeatures.HostTso4) }, { "VIRTIO_NET_F_HOST_TSO6", Bit(NetFeatures.HostTso6) },
        { "VIRTIO_NET_F_HOST_ECN", Bit(NetFeatures.HostEcn) }, { "VIRTIO_NET_F_MRG_RXBUF", Bit(NetFeatures.MrgRxbuf) },
        { "VIRTIO_NET_F_STATUS", Bit(NetFeatures.Status) }, { "VIRTIO_NET_F_CTRL_VQ", Bit(NetFeatures.CtrlVq) },
        { "VIRTIO_NET_F_CTRL_RX", Bit(NetFeatures.CtrlRx) }, { "VIRTIO_NET_F_CTRL_MAC_ADDR", Bit(NetFeatures.CtrlMacAddr) },
        { "VIRTIO_NET_S_LINK_UP", NetFeatures.StatusLinkUp },
        { "VIRTIO_NET_HDR_F_NEEDS_CSUM", NetHeader.FlagNeedsCsum }, { "VIRTIO_NET_HDR_F_DATA_VALID", NetHeader.FlagDataValid },
        { "VIRTIO_NET_HDR_GSO_NONE", NetHeader.GsoNone }, { "VIRTIO_NET_HDR_GSO_TCPV4", NetHeader.GsoTcpV4 },
        { "VIRTIO_NET_HDR_GSO_TCPV6", NetHeader.GsoTcpV6 }, { "VIRTIO_NET_HDR_GSO_ECN", NetHeader.GsoEcn },
        { "VIRTIO_NET_CTRL_RX", NetControl.ClassRx }, { "VIRTIO_NET_CTRL_RX_PROMISC", NetControl.RxPromisc },
        { "VIRTIO_NET_CTRL_RX_ALLMULTI", NetControl.RxAllMulti }, { "VIRTIO_NET_CTRL_MAC", NetControl.ClassMac },
        { "VIRTIO_NET_CTRL_MAC_TABLE_SET", NetControl.MacTableSet }, { "VIRTIO_NET_CTRL_MAC_ADDR_SET", NetControl.MacAddrSet },
        { "VIRTIO_NET_CTRL_ANNOUNCE", NetControl.ClassAnnounce }, { "VIRTIO_NET_CTRL_ANNOUNCE_ACK", NetControl.AnnounceAck },
    };

    private static ulong Bit(ulong feature) => (ulong)System.Numerics.BitOperations.TrailingZeroCount(feature);

    [Theory]
    [MemberData(nameof(Ioctls))]
    public void IoctlAndConstant_MatchKernelHeader(string name, ulong value)
    {
        Assert.Equal((ulong)K($"ioctl {name}"), value);
    }

    [Fact]
    public void KvmRunHead_FitsTheSmallestRunPage()
    {
        Assert.True(Unsafe.SizeOf<KvmRun>() <= 4096);
    }
}
