using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Tests.Devices;

/// <summary>The irqfd routing policy: a route per vector, re-pointed only when the guest changed the message,
/// and KVM_SIGNAL_MSI when the hypervisor has no routes to give.</summary>
public sealed class HypervisorMsiSinkTests
{
    private sealed class FakeRoute(FakeVm vm, ulong address, uint data) : IMsiRoute
    {
        public ulong Address { get; private set; } = address;
        public uint Data { get; private set; } = data;
        public int Signals, Updates;
        public bool Disposed;
        public bool Update(ulong address, uint data)
        {
            Updates++;
            if (vm.RefuseUpdates) return false;
            Address = address; Data = data;
            return true;
        }
        public void Signal() => Signals++;
        public void Dispose() => Disposed = true;
    }

    private sealed class FakeVm : IVirtualMachine
    {
        public int RoutesLeft = int.MaxValue;
        public bool RefuseUpdates;
        public readonly List<FakeRoute> Routes = [];
        public readonly List<(ulong, uint)> Ioctls = [];

        public IMsiRoute? TryCreateMsiRoute(ulong address, uint data)
        {
            if (RoutesLeft-- <= 0) return null;
            var route = new FakeRoute(this, address, data);
            Routes.Add(route);
            return route;
        }
        public void SignalMsi(ulong address, uint data) => Ioctls.Add((address, data));

        public void MapMemory(int slot, ulong guestAddress, nint hostAddress, ulong size, bool readOnly = false) => throw new NotSupportedException();
        public void UnmapMemory(int slot) => throw new NotSupportedException();
        public void SetIrqLine(int gsi, bool level) => throw new NotSupportedException();
        public void SetInterruptRouting(IReadOnlyDictionary<int, int> picIrqForGsi) => throw new NotSupportedException();
        public void EnableUnknownMsrExits() => throw new NotSupportedException();
        public bool TryAttachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
        public void DetachDoorbell(Vmm.Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) => throw new NotSupportedException();
        public IVcpu CreateVcpu(int id, int vcpuCount, bool x2Apic = false) => throw new NotSupportedException();
        public void Dispose() { }
    }

    private const ulong Apic = 0xFEE0_0000;

    [Fact]
    public void EachVector_GetsOneRoute_AndRepeatedInterruptsOnlySignalIt()
    {
        var vm = new FakeVm();
        var sink = new HypervisorMsiSink(vm);
        for (int i = 0; i < 3; i++) { sink.Signal(0, Apic, 0x50); sink.Signal(1, Apic, 0x51); }
        Assert.Equal(2, vm.Routes.Count);
        Assert.Equal([3, 3], vm.Routes.Select(r => r.Signals));
        Assert.Equal([0, 0], vm.Routes.Select(r => r.Updates));
        Assert.Empty(vm.Ioctls);
        Assert.Equal(6, sink.ThroughIrqfd);
    }

    [Fact]
    public void ARewrittenMessage_RepointsTheVectorsRoute_BeforeSignallingIt()
    {
        var vm = new FakeVm();
        var sink = new HypervisorMsiSink(vm);
        sink.Signal(0, Apic, 0x50);
        sink.Signal(0, Apic | 0x1000, 0x61);
        var route = Assert.Single(vm.Routes);
        Assert.Equal((Apic | 0x1000, 0x61u), (route.Address, route.Data));
        Assert.Equal(2, route.Signals);
        Assert.Equal(1, sink.RouteUpdates);
    }

    [Fact]
    public void WithoutRoutes_MessagesGoThroughTheIoctl()
    {
        var vm = new FakeVm { RoutesLeft = 1 };
        var sink = new HypervisorMsiSink(vm);
        sink.Signal(0, Apic, 0x50);
        sink.Signal(1, Apic, 0x51);          // no route left for vector 1
        sink.Signal(200, Apic, 0x52);        // beyond any table this sink routes
        Assert.Equal([(Apic, 0x51u), (Apic, 0x52u)], vm.Ioctls);
        Assert.Equal(1, sink.ThroughIrqfd);
        Assert.Equal(2, sink.ThroughIoctl);
    }

    [Fact]
    public void ARefusedUpdate_DropsTheRoute_AndDeliversThroughTheIoctl()
    {
        var vm = new FakeVm();
        var sink = new HypervisorMsiSink(vm);
        sink.Signal(0, Apic, 0x50);
        vm.RefuseUpdates = true;
        sink.Signal(0, Apic, 0x60);
        sink.Signal(0, Apic, 0x60);
        Assert.True(vm.Routes[0].Disposed);
        Assert.Equal([(Apic, 0x60u), (Apic, 0x60u)], vm.Ioctls);
        Assert.Single(vm.Routes);            // no new route is tried once one was refused
    }

    [Fact]
    public void Dispose_ReleasesEveryRoute_AndLaterInterruptsStillArrive()
    {
        var vm = new FakeVm();
        var sink = new HypervisorMsiSink(vm);
        sink.Signal(0, Apic, 0x50);
        sink.Signal(3, Apic, 0x53);
        sink.Dispose();
        Assert.All(vm.Routes, r => Assert.True(r.Disposed));
        sink.Signal(0, Apic, 0x50);
        Assert.Equal([(Apic, 0x50u)], vm.Ioctls);
    }
}
