using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// One function's MSI delivery through the hypervisor. Each vector gets an irqfd route the first time it
/// fires, re-pointed only when the guest has rewritten its message, so an interrupt from a device thread is
/// one eventfd write; where the hypervisor has no routes left (or none at all) the message goes through
/// <see cref="IVirtualMachine.SignalMsi"/>.
/// </summary>
public sealed class HypervisorMsiSink(IVirtualMachine vm) : IMsiSink, IDeviceCounters, IDisposable
{
    /// <summary>MSI-X allows 2048 vectors, but our functions have at most 128 (the table BAR's limit).</summary>
    private const int MaxRoutedVectors = 128;
    private readonly IMsiRoute?[] _routes = new IMsiRoute?[MaxRoutedVectors];
    private bool _noMoreRoutes;
    private long _throughIrqfd, _throughIoctl, _routeUpdates;

    public long ThroughIrqfd => Interlocked.Read(ref _throughIrqfd);
    public long ThroughIoctl => Interlocked.Read(ref _throughIoctl);
    /// <summary>How often a vector's route was re-pointed because the guest changed its message.</summary>
    public long RouteUpdates => Interlocked.Read(ref _routeUpdates);

    public IEnumerable<KeyValuePair<string, long>> Counters =>
        [new("msi_irqfd", ThroughIrqfd), new("msi_ioctl", ThroughIoctl), new("msi_route_updates", RouteUpdates)];

    public void Signal(int vector, ulong address, uint data)
    {
        var route = Route(vector, address, data);
        if (route != null)
        {
            route.Signal();
            Interlocked.Increment(ref _throughIrqfd);
            return;
        }
        vm.SignalMsi(address, data);
        Interlocked.Increment(ref _throughIoctl);
    }

    private IMsiRoute? Route(int vector, ulong address, uint data)
    {
        if ((uint)vector >= MaxRoutedVectors) return null;
        var route = _routes[vector];
        if (route == null)
        {
            if (_noMoreRoutes) return null;
            route = vm.TryCreateMsiRoute(address, data);
            if (route == null) _noMoreRoutes = true;
            return _routes[vector] = route;
        }
        if (route.Address == address && route.Data == data) return route;
        Interlocked.Increment(ref _routeUpdates);
        if (route.Update(address, data)) return route;
        route.Dispose();
        _routes[vector] = null;
        _noMoreRoutes = true;
        return null;
    }

    public void Dispose()
    {
        // Called once the device threads that raise interrupts have stopped.
        _noMoreRoutes = true;
        for (int v = 0; v < _routes.Length; v++)
        {
            _routes[v]?.Dispose();
            _routes[v] = null;
        }
    }
}
