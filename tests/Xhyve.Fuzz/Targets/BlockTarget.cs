using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Block;

namespace Xhyve.Fuzz;

/// <summary>
/// virtio-blk through its device entry (Activate, Process, Reset), the way the PCI transport drives it, so
/// the request parser behind it can change without touching the harness. Input: the queue header of the
/// "queue" target, then device options (bit 0: 4096-byte sectors, bit 1: read-only disk, bit 2: a second
/// notification), then guest RAM. The disk is 64 KiB in memory; a request outside it reaching the backend
/// is a crash, as is any exception (on the I/O pool's threads it takes the process down).
/// </summary>
internal static class BlockTarget
{
    private const int DiskSize = 64 << 10;

    public static void Run(byte[] data)
    {
        var input = new InputReader(data);
        byte options = input.U8();
        var (ring, memory, _) = QueueTarget.Build(ref input);
        if (!ring.RingsValid) return;   // the transport refuses to activate such a queue
        int sector = (options & 1) != 0 ? 4096 : 512;
        using var block = new VirtioBlock(new MemoryBackend(DiskSize, sector, readOnly: (options & 2) != 0), sector, sector, ioThreads: 1);
        // The device turns an unexpected exception into DEVICE_NEEDS_RESET instead of dying (the engine must
        // live on); for the fuzzer that is exactly the bug to report, so it is rethrown here.
        Exception? fault = null;
        var queue = new Virtqueue(0, ring, _ => { }, _ => { }, (_, e) => fault ??= e);
        ulong features = block.Features | Virtio.FeatureVersion1 | (ring.EventIdx ? Virtio.FeatureEventIdx : 0) | (ring.IndirectDescriptors ? Virtio.FeatureIndirectDesc : 0);
        block.Activate(memory, features, [queue]);
        block.Process(0);
        if ((options & 4) != 0) block.Process(0);
        block.Reset();   // waits for requests still on the I/O pool
        if (fault != null) throw new FuzzBugException($"virtio-blk met an unexpected exception: {fault}");
        if (Program.Verbose) Console.WriteLine($"  reads {block.Reads}, writes {block.Writes}, flushes {block.Flushes}, errors {block.Errors}");
    }
}
