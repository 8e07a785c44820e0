using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.FwCfg;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Memory;

namespace Xhyve.Vmm.Firmware.FwCfg;

/// <summary>A kernel for firmware to load from fw_cfg (QEMU's -kernel/-initrd/-append items).</summary>
public sealed record FwCfgKernel(string KernelPath, string? InitrdPath, string? CommandLine);

/// <summary>
/// The one place that decides what a VM's fw_cfg device serves: the numbered items QEMU's x86 machines have
/// (signature, features, UUID, RAM size, CPUs, boot menu off, optionally the kernel items) and the files
/// SeaBIOS and OVMF read (etc/e820, the ACPI tables with etc/table-loader, SMBIOS anchor and tables,
/// bootorder, etc/boot-menu-wait, etc/sercon-port when COM1 exists).
/// </summary>
public static class FwCfgContent
{
    public const string E820File = "etc/e820", BootOrderFile = "bootorder", BootMenuWaitFile = "etc/boot-menu-wait",
        SerialConsoleFile = "etc/sercon-port";

    // QEMU's places for a kernel booted through its loader ROM (boot protocol 2.02+, loaded high).
    public const uint SetupAddress = 0x1_0000, CommandLineAddress = 0x2_0000, KernelAddress = 0x10_0000;

    /// <summary>Builds the items. <paramref name="acpi"/> is null without -A (firmware then builds its own ACPI
    /// tables); <paramref name="smbios"/> is what <see cref="SmbiosTables.Build(PlatformDescription, Guid, string, ulong, ulong)"/>
    /// returned; <paramref name="kernel"/> adds the kernel items (files are read on demand, not held in memory);
    /// <paramref name="bootOrder"/> is newline-separated OpenFirmware device paths.</summary>
    public static FwCfgItems Build(VmSpecification spec, IGuestMemory memory, IReadOnlyList<PlacedTable>? acpi, byte[] smbios,
        FwCfgKernel? kernel = null, string bootOrder = "")
    {
        var items = new FwCfgItems();
        try
        {
            items.Add(FwCfgSelectors.Signature, "QEMU"u8.ToArray())
                 .AddU32(FwCfgSelectors.Id, FwCfgSelectors.FeatureTraditional | FwCfgSelectors.FeatureDma)
                 .Add(FwCfgSelectors.Uuid, spec.EffectiveUuid.ToByteArray(bigEndian: true))
                 .AddU64(FwCfgSelectors.RamSize, memory.Size)
                 .AddU16(FwCfgSelectors.NoGraphic, 1)                  // there is no display
                 .AddU16(FwCfgSelectors.NbCpus, (ushort)spec.Vcpus)
                 .AddU16(FwCfgSelectors.MaxCpus, (ushort)spec.Vcpus)
                 .AddU16(FwCfgSelectors.BootMenu, 0);                  // SeaBIOS reads it as etc/show-boot-menu: no menu, no wait

            items.AddFile(E820File, E820(memory));
            if (acpi != null)
            {
                var loader = new TableLoader();
                var files = AcpiTableLoader.Build(acpi, loader);
                items.AddFile(AcpiTableLoader.TablesFile, files.Tables)
                     .AddFile(AcpiTableLoader.RsdpFile, files.Rsdp)
                     .AddFile(TableLoader.FileName, loader.ToArray());
            }
            var (anchor, tables) = SmbiosFwCfg.Split(smbios);
            items.AddFile(SmbiosFwCfg.AnchorFile, anchor).AddFile(SmbiosFwCfg.TablesFile, tables);
            items.AddFile(BootOrderFile, Encoding.ASCII.GetBytes(bootOrder));
            items.AddFile(BootMenuWaitFile, U16(0));
            // SeaBIOS prints to this port (its banner, boot messages): the only console without VGA.
            if (spec.PciDevices.Any(d => d.Device is LpcSpec)) items.AddFile(SerialConsoleFile, U16(X86Layout.Com1Port));
            if (kernel != null) AddKernel(items, kernel, memory);
            return items;
        }
        catch
        {
            items.Dispose();
            throw;
        }
    }

    /// <summary>etc/e820: {le64 address, le64 length, le32 type} per entry.</summary>
    public static byte[] E820(IGuestMemory memory)
    {
        var entries = E820Map.Build(memory);
        var b = new byte[entries.Count * E820Map.EntrySize];
        for (int i = 0; i < entries.Count; i++) E820Map.Write(b.AsSpan(i * E820Map.EntrySize), entries[i]);
        return b;
    }

    private static byte[] U16(ushort v) { var b = new byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, v); return b; }

    /// <summary>The kernel items as QEMU lays them out: for a bzImage the setup sectors (with the loader's header
    /// fields filled in) apart from the protected-mode kernel; any other image whole as the kernel.</summary>
    private static void AddKernel(FwCfgItems items, FwCfgKernel k, IGuestMemory memory)
    {
        var kernelFile = Open(k.KernelPath, "kernel", items);
        long kernelLength = RandomAccess.GetLength(kernelFile);
        // The setup header first, then exactly the setup sectors (kept for the VM's life as the setup item).
        Span<byte> head = stackalloc byte[0x400];
        head = head[..(int)Math.Min(kernelLength, head.Length)];
        if (RandomAccess.Read(kernelFile, head, 0) != head.Length) throw new BootImageException($"{k.KernelPath}: kernel: short read");

        byte[]? setup = null;
        if (BzImage.HasBzImageMagic(head) && head.Length > 0x270)
        {
            int setupBytes = BzImage.SetupBytesOf(head);
            if (setupBytes < kernelLength)
            {
                setup = new byte[setupBytes];
                if (RandomAccess.Read(kernelFile, setup, 0) != setup.Length) throw new BootImageException($"{k.KernelPath}: kernel: short read");
            }
        }
        long protectedStart = setup?.Length ?? 0;
        if (kernelLength - protectedStart > uint.MaxValue) return;   // the size items are 32-bit: no kernel items at all
        items.AddU32(FwCfgSelectors.KernelAddress, KernelAddress)
             .AddU32(FwCfgSelectors.KernelSize, (uint)(kernelLength - protectedStart))
             .Add(FwCfgSelectors.KernelData, FwCfgItem.FromFile(kernelFile, protectedStart, kernelLength - protectedStart));

        var commandLine = Encoding.ASCII.GetBytes((k.CommandLine ?? "") + "\0");
        items.AddU32(FwCfgSelectors.CommandLineAddress, CommandLineAddress)
             .AddU32(FwCfgSelectors.CommandLineSize, (uint)commandLine.Length)
             .Add(FwCfgSelectors.CommandLineData, commandLine);

        uint initrdAddress = 0, initrdLength = 0;
        if (!string.IsNullOrEmpty(k.InitrdPath))
        {
            var initrdFile = Open(k.InitrdPath, "initrd", items);
            long length = RandomAccess.GetLength(initrdFile);
            ushort protocol = setup != null ? BinaryPrimitives.ReadUInt16LittleEndian(setup.AsSpan(0x206)) : (ushort)0;
            ulong max = setup != null && protocol >= 0x0203 ? BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x22C)) : 0x37FF_FFFF;
            // Below the top of low RAM, leaving room there for the firmware's own tables (as QEMU does).
            ulong lowEnd = memory.Regions[0].End;
            if (lowEnd > 0x2_0000) max = Math.Min(max, lowEnd - 0x2_0000 - 1);
            // One that does not fit there is left out (no items, nothing in the header) rather than offered at an address
            // a loader would write it to: these items are extra for a -f kexec VM, which the engine has already loaded.
            if ((ulong)length <= max)
            {
                initrdAddress = (uint)((max - (ulong)length) & ~0xFFFUL);
                initrdLength = (uint)length;
                items.AddU32(FwCfgSelectors.InitrdAddress, initrdAddress)
                     .AddU32(FwCfgSelectors.InitrdSize, initrdLength)
                     .Add(FwCfgSelectors.InitrdData, FwCfgItem.FromFile(initrdFile, 0, length));
            }
        }

        if (setup != null)
        {
            setup[0x210] = 0xB0;                                                            // type_of_loader: "QEMU"
            setup[0x211] |= 0x80;                                                           // CAN_USE_HEAP
            BinaryPrimitives.WriteUInt16LittleEndian(setup.AsSpan(0x224), (ushort)(CommandLineAddress - SetupAddress - 0x200)); // heap_end_ptr
            BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x228), CommandLineAddress);     // cmd_line_ptr
            BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x218), initrdAddress);          // ramdisk_image
            BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x21C), initrdLength);           // ramdisk_size
            items.AddU32(FwCfgSelectors.SetupAddress, SetupAddress)
                 .AddU32(FwCfgSelectors.SetupSize, (uint)setup.Length)
                 .Add(FwCfgSelectors.SetupData, setup);
        }
    }

    private static SafeFileHandle Open(string path, string what, FwCfgItems owner)
    {
        try
        {
            var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            owner.Own(handle);
            return handle;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException($"{path}: cannot open the {what}: {e.Message}");
        }
    }
}
