using System.Runtime.InteropServices;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Vmm.Tests.Hypervisor;

/// <summary>The KVM backend's read-only slots (a boot ROM) and slot removal, on the real KVM: a vCPU started at the
/// reset vector runs code from a read-only page at the top of 4 GiB, its write to that page exits as MMIO, and the
/// page still reads as it was.</summary>
public sealed unsafe class KvmReadOnlyMemoryTests
{
    private const string NoKvm = "/dev/kvm is absent: this test needs KVM to map memory and run a vCPU";
    private const ulong Page = 0xFFFF_F000;

    /// <summary>A page for 0xFFFFF000: at the reset vector (offset 0xFF0) a jump to offset 0; there
    /// "mov byte [cs:0xFF00], 0x42; mov al, [cs:0xFF00]; out 0x80, al; hlt" (CS base 0xFFFF0000); 0x99 at 0xF00.</summary>
    private static byte[] RomPage()
    {
        var page = new byte[4096];
        byte[] code = [0x2E, 0xC6, 0x06, 0x00, 0xFF, 0x42, 0x2E, 0xA0, 0x00, 0xFF, 0xE6, 0x80, 0xF4];
        code.CopyTo(page, 0);
        page[0xF00] = 0x99;
        // jmp near rel16 from IP 0xFFF3 to IP 0xF000
        page[0xFF0] = 0xE9;
        BitConverter.TryWriteBytes(page.AsSpan(0xFF1), (short)(0xF000 - 0xFFF3));
        return page;
    }

    [SkippableFact]
    public void ReadOnlySlot_GuestWriteExitsAsMmio_AndTheRomStillReadsAsItWas_FromTheResetVector()
    {
        Skip.IfNot(KvmHypervisor.IsPresent, NoKvm);
        byte* host = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        try
        {
            RomPage().CopyTo(new Span<byte>(host, 4096));
            using var hypervisor = KvmHypervisor.Open();
            using var vm = hypervisor.CreateVm();
            vm.MapMemory(VmBuilder.BootRomSlot, Page, (nint)host, 4096, readOnly: true);
            using var vcpu = vm.CreateVcpu(0, 1);
            vcpu.AttachToCurrentThread();
            try
            {
                vcpu.SetBootState(EntryState.ResetVector());
                (ulong Address, byte Value)? mmioWrite = null;
                byte? port80 = null;
                for (int i = 0; i < 100 && port80 == null; i++)
                {
                    var exit = vcpu.Run();
                    if (exit.Reason == VcpuExitReason.Mmio && exit.IsWrite) mmioWrite = (exit.Address, exit.Data[0]);
                    else if (exit.Reason == VcpuExitReason.Io && exit.Port == 0x80) port80 = exit.Data[0];
                    else if (exit.Reason is not (VcpuExitReason.Interrupted or VcpuExitReason.Mmio))
                        Assert.Fail($"unexpected exit {exit.Reason} (raw {exit.RawReason}, detail {exit.Detail})");
                }
                Assert.Equal((0xFFFF_FF00UL, (byte)0x42), mmioWrite);
                Assert.Equal((byte)0x99, port80);   // the write did not reach the ROM
                Assert.Equal(0x99, host[0xF00]);
            }
            finally { vcpu.DetachFromCurrentThread(); }
        }
        finally { NativeMemory.AlignedFree(host); }
    }

    [SkippableFact]
    public void UnmapMemory_FreesTheRange_SoAnotherSlotCanTakeIt()
    {
        Skip.IfNot(KvmHypervisor.IsPresent, NoKvm);
        byte* host = (byte*)NativeMemory.AlignedAlloc(8192, 4096);
        try
        {
            using var hypervisor = KvmHypervisor.Open();
            using var vm = hypervisor.CreateVm();
            vm.MapMemory(5, Page, (nint)host, 4096, readOnly: true);
            // KVM refuses a slot over another's range: this is what UnmapMemory must undo.
            Assert.Throws<HypervisorException>(() => vm.MapMemory(6, Page, (nint)host + 4096, 4096));
            vm.UnmapMemory(5);
            vm.MapMemory(6, Page, (nint)host + 4096, 4096);
            vm.UnmapMemory(6);
            vm.UnmapMemory(7);   // a slot never mapped: nothing to do
        }
        finally { NativeMemory.AlignedFree(host); }
    }
}
