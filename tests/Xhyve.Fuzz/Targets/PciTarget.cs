using System.Buffers.Binary;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Block;

namespace Xhyve.Fuzz;

/// <summary>
/// A virtio-blk PCI function behind the root bus, driven by a sequence of guest accesses: configuration space
/// (direct, through 0xCF8/0xCFC, through ECAM), and its BARs (modern, legacy, MSI-X) directly or wherever the
/// guest mapped them. Input: one option byte (bit 0: single-vector MSI instead of MSI-X), then records of
/// [kind:4 bits | width:2 bits][offset u16][value u32 or u64]. Nothing a guest does may throw.
/// </summary>
internal static class PciTarget
{
    private const int MaxAccesses = 1024;
    private static readonly PciAddress Slot = new(0, 1, 0);

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        byte options = input.U8();
        var memory = new PinnedGuestMemory(64 << 10, default);
        var pio = new DeviceBus("pio");
        var mmio = new DeviceBus("mmio");
        var root = new PciRootBus(_ => { }, pio, mmio);
        var ecam = new PciEcam(root);
        using var device = new VirtioPciDevice(new VirtioBlock(new MemoryBackend(64 << 10, 512, readOnly: false), 512, 512, ioThreads: 1),
            memory, new NullMsiSink(), new NullInterruptLine(), new NoDoorbells(), singleVectorMsi: (options & 1) != 0);
        root.Add(new PciAddress(0, 0, 0), PciIdentityFunction.HostBridge());
        root.Add(Slot, device);
        IBusDevice Bar(int index) => device.Bars.FirstOrDefault(b => b.Index == index)?.Handler ?? NullBus.Instance;

        Span<byte> buffer = stackalloc byte[8];
        for (int i = 0; i < MaxAccesses && input.Remaining > 0; i++)
        {
            byte op = input.U8();
            int width = 1 << (op & 3);                       // 1, 2, 4, 8
            int configWidth = Math.Min(width, 4);
            int kind = op >> 4;
            ushort offset = input.U16();
            ulong value = width == 8 ? input.U64() : input.U32();
            var bytes = buffer[..width];
            BinaryPrimitives.WriteUInt64LittleEndian(buffer, value);
            var function = (op & 4) != 0 ? new PciAddress(0, 0, 0) : Slot;
            switch (kind)
            {
                case 0: case 1: root.WriteConfig(function, offset & 0x1FF, configWidth, (uint)value); break;
                case 2: root.ReadConfig(function, offset & 0x1FF, configWidth); break;
                case 3: root.Write((ulong)(offset & 7), bytes[..Math.Min(width, 4)]); break;         // 0xCF8..0xCFF
                case 4: root.Read((ulong)(offset & 7), bytes[..Math.Min(width, 4)]); break;
                case 5: ecam.Write((ulong)(Slot.Slot << 15 | offset & 0xFFF), bytes[..configWidth]); break;
                case 6: ecam.Read((ulong)(Slot.Slot << 15 | offset & 0xFFF), bytes[..configWidth]); break;
                case 7: case 8: Bar(VirtioPciDevice.ModernBar).Write(offset & 0x3FFFUL, bytes); break;
                case 9: Bar(VirtioPciDevice.ModernBar).Read(offset & 0x3FFFUL, bytes); break;
                case 10: Bar(VirtioPciDevice.LegacyBar).Write(offset & 0x7FUL, bytes); break;
                case 11: Bar(VirtioPciDevice.LegacyBar).Read(offset & 0x7FUL, bytes); break;
                case 12: Bar(VirtioPciDevice.MsixBar).Write(offset & 0xFFFUL, bytes); break;
                case 13: Bar(VirtioPciDevice.MsixBar).Read(offset & 0xFFFUL, bytes); break;
                // Through the buses, at whatever address the guest placed the BARs (value is the address).
                case 14: if ((op & 8) != 0) mmio.Write(value, bytes[..configWidth]); else mmio.Read(value, bytes[..configWidth]); break;
                case 15: if ((op & 8) != 0) pio.Write(offset, bytes[..configWidth]); else pio.Read(offset, bytes[..configWidth]); break;
            }
        }
    }

    private sealed class NullBus : IBusDevice
    {
        public static readonly NullBus Instance = new();
        public void Read(ulong offset, Span<byte> data) { }
        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }
}
