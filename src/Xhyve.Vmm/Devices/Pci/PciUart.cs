using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Legacy;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// bhyve's "uart": a 16550A behind an 8-byte I/O BAR with INTx, identified as bhyve does
/// (0x131F:0x2000, class 07/00/02 "16550-compatible serial controller").
/// </summary>
public sealed class PciUart : PciDevice
{
    public Uart16550 Uart { get; }
    public PciInterrupts Interrupts { get; }

    public PciUart(ISerialOutput output, IMsiSink msi, IInterruptLine intx)
        : base("uart", new PciConfigSpace(0x131F, 0x2000, 0x07, 0x00, 0x02))
    {
        Interrupts = PciInterrupts.Create(Config, msi, intx, msiVectors: 0, msixVectors: 0, msixBar: 0, out _);
        Uart = new Uart16550(output, new IntxLine(Interrupts));
        AddBar(0, PciBarKind.Io, 8, new ByteRegisterBusAdapter(Uart));
    }

    public override void ConfigWritten(int offset, int width) => Interrupts.Reevaluate();

    /// <summary>The UART's interrupt output drives the function's INTx.</summary>
    private sealed class IntxLine(PciInterrupts interrupts) : IInterruptLine
    {
        public void Set(bool level)
        {
            if (level) interrupts.Trigger(0);
            else interrupts.DeassertIntx();
        }
    }
}
