using System.Buffers.Binary;
using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Pci;

/// <summary>
/// A diagnostic device ("-s N,testdev") that raises interrupts on request, so guests and tests can check
/// MSI-X, MSI and INTx delivery end to end. BAR0 (MMIO, 4 KiB): 0x00 magic "XTST" (read-only),
/// 0x04 doorbell (write a vector number to trigger it), 0x08 INTx acknowledge (write to deassert),
/// 0x0C triggers so far. BAR1 (MMIO, 4 KiB): the MSI-X table and PBA. With single-vector MSI (-W) the
/// MSI-X capability is left out.
/// </summary>
public sealed class PciTestDevice : PciDevice
{
    public const ushort VendorId = 0x1275, DeviceId = 0x7E57;     // bhyve's vendor id, a device id of our own
    public const uint Magic = 0x5453_5458;                          // "XTST"
    public const int MsixVectors = 4;

    public PciInterrupts Interrupts { get; }
    private long _triggers;

    public PciTestDevice(IMsiSink msi, IInterruptLine intx, bool singleVectorMsi)
        : base("testdev", new PciConfigSpace(VendorId, DeviceId, 0xFF, 0x00, 0x00))
    {
        Interrupts = PciInterrupts.Create(Config, msi, intx, msiVectors: 1, msixVectors: singleVectorMsi ? 0 : MsixVectors, msixBar: 1, out var table);
        AddBar(0, PciBarKind.Memory32, 0x1000, new Registers(this));
        if (table != null) AddBar(1, PciBarKind.Memory32, MsixTable.BarSize, table);
    }

    public long Triggers => Interlocked.Read(ref _triggers);

    public override void ConfigWritten(int offset, int width) => Interrupts.Reevaluate();

    private sealed class Registers(PciTestDevice device) : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data)
        {
            data.Fill(0);
            if (data.Length != 4) return;
            uint v = offset switch { 0x00 => Magic, 0x0C => (uint)device.Triggers, _ => 0 };
            BinaryPrimitives.WriteUInt32LittleEndian(data, v);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (data.Length != 4) return;
            uint v = BinaryPrimitives.ReadUInt32LittleEndian(data);
            switch (offset)
            {
                case 0x04:
                    Interlocked.Increment(ref device._triggers);
                    device.Interrupts.Trigger((int)Math.Min(v, int.MaxValue));
                    break;
                case 0x08:
                    device.Interrupts.DeassertIntx();
                    break;
            }
        }
    }
}
