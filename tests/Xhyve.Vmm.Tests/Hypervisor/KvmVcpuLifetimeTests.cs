using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Hypervisor.Kvm;

namespace Xhyve.Vmm.Tests.Hypervisor;

/// <summary>
/// A vCPU's run area and fd against kicks from any thread (signal handlers, the control API) and against the
/// vCPU thread itself: nothing is freed while a kick or a Run can still use it.
/// </summary>
public sealed class KvmVcpuLifetimeTests
{
    private const string NoKvm = "/dev/kvm is absent: this test needs KVM to create a vCPU";

    [SkippableFact]
    public void Kick_AfterDispose_DoesNothing_InsteadOfWritingTheUnmappedRunArea()
    {
        Skip.IfNot(KvmHypervisor.IsPresent, NoKvm);
        using var hypervisor = KvmHypervisor.Open();
        using var vm = hypervisor.CreateVm();
        var vcpu = vm.CreateVcpu(0, 1);
        vcpu.Dispose();
        // Before the fix this wrote immediate_exit into the unmapped page: a segfault that ends the process.
        for (int i = 0; i < 3; i++) vcpu.Kick();
        Assert.False(vcpu.IsAttached);
    }

    [SkippableFact]
    public void Kicks_RacingDispose_FromManyThreads_NeverTouchAFreedRunArea()
    {
        Skip.IfNot(KvmHypervisor.IsPresent, NoKvm);
        using var hypervisor = KvmHypervisor.Open();
        using var vm = hypervisor.CreateVm();
        for (int round = 0; round < 20; round++)
        {
            var vcpu = vm.CreateVcpu(round, 32);
            using var go = new Barrier(5);
            var kickers = Enumerable.Range(0, 4).Select(_ => new Thread(() =>
            {
                go.SignalAndWait();
                for (int i = 0; i < 2_000; i++) vcpu.Kick();
            })).ToArray();
            foreach (var t in kickers) t.Start();
            go.SignalAndWait();
            vcpu.Dispose();
            foreach (var t in kickers) t.Join();
        }
    }

    [SkippableFact]
    public void Dispose_WhileTheVcpuThreadIsAttached_KeepsRunAreaAndFd_UntilTheThreadDetaches()
    {
        Skip.IfNot(KvmHypervisor.IsPresent, NoKvm);
        using var hypervisor = KvmHypervisor.Open();
        using var vm = hypervisor.CreateVm();
        var vcpu = vm.CreateVcpu(0, 1);
        using var attached = new ManualResetEventSlim();
        using var disposed = new ManualResetEventSlim();
        VcpuExitReason? reason = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            vcpu.AttachToCurrentThread();
            attached.Set();
            disposed.Wait();
            // As a vCPU loop that was between two exits when the engine tore the machine down.
            try { reason = vcpu.Run().Reason; }
            catch (Exception e) { failure = e; }
            finally { vcpu.DetachFromCurrentThread(); }
        });
        thread.Start();
        attached.Wait();
        vcpu.Kick();      // immediate_exit: the Run below returns at once without entering the guest
        vcpu.Dispose();
        Assert.True(vcpu.IsAttached);
        disposed.Set();
        thread.Join();
        Assert.Null(failure);   // before the fix: KVM_RUN on the closed fd (EBADF), reading an unmapped run area
        Assert.Equal(VcpuExitReason.Interrupted, reason);
        Assert.False(vcpu.IsAttached);
        Assert.Throws<ObjectDisposedException>(vcpu.AttachToCurrentThread);
    }
}
