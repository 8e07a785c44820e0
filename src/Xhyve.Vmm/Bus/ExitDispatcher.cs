using Xhyve.Vmm.Hypervisor;

namespace Xhyve.Vmm.Bus;

/// <summary>What the vCPU loop should do after an exit was dispatched.</summary>
public enum DispatchResult { Continue, UnhandledAccess }

/// <summary>
/// Routes I/O and MMIO exits to the buses. Accesses nobody claims read as all-ones and writes are
/// dropped, unless strict (-e), when they stop the VM.
/// </summary>
public sealed class ExitDispatcher(DeviceBus pio, DeviceBus mmio, bool strict)
{
    private long _unhandled;
    public long UnhandledAccesses => Interlocked.Read(ref _unhandled);

    public DispatchResult Dispatch(in VcpuExit exit)
    {
        bool handled = true;
        if (exit.Reason == VcpuExitReason.Io)
        {
            for (int i = 0; i < exit.Count; i++)
            {
                var slice = exit.Data.Slice(i * exit.Size, exit.Size);
                handled &= exit.IsWrite ? pio.Write(exit.Port, slice) : pio.Read(exit.Port, slice);
                if (!handled && !exit.IsWrite) slice.Fill(0xFF);
            }
        }
        else if (exit.Reason == VcpuExitReason.Mmio)
        {
            handled = exit.IsWrite ? mmio.Write(exit.Address, exit.Data) : mmio.Read(exit.Address, exit.Data);
            if (!handled && !exit.IsWrite) exit.Data.Fill(0xFF);
        }
        if (handled) return DispatchResult.Continue;
        Interlocked.Increment(ref _unhandled);
        return strict ? DispatchResult.UnhandledAccess : DispatchResult.Continue;
    }
}
