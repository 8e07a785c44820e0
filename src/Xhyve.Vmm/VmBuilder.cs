using Xhyve.Vmm.Boot;
using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Config;
using Xhyve.Vmm.Devices.Legacy;
using Xhyve.Vmm.Devices.Acpi;
using Xhyve.Vmm.Devices.Ahci;
using Xhyve.Vmm.Devices.Ahci.Atapi;
using Xhyve.Vmm.Devices.Chipset;
using Xhyve.Vmm.Devices.Flash;
using Xhyve.Vmm.Devices.FwCfg;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Devices.Timers;
using Xhyve.Vmm.Devices.Virtio;
using Xhyve.Vmm.Devices.Virtio.Block;
using Xhyve.Vmm.Devices.Virtio.Entropy;
using Xhyve.Vmm.Devices.Virtio.Net;
using Xhyve.Vmm.Firmware;
using Xhyve.Vmm.Firmware.Acpi;
using Xhyve.Vmm.Firmware.FwCfg;
using Xhyve.Vmm.Firmware.Smbios;
using Xhyve.Vmm.Hypervisor;
using Xhyve.Vmm.Memory;
using Xhyve.Vmm.Serial;
using Xhyve.Vmm.Storage;

namespace Xhyve.Vmm;

/// <summary>
/// The composition root: turns one <see cref="VmSpecification"/> into a <see cref="Machine"/> as a
/// straight list of small Attach steps. Devices get their bus range, interrupt line and callbacks here
/// and nowhere else.
/// </summary>
public sealed class VmBuilder
{
    private readonly VmSpecification _spec;
    private readonly IHypervisor _hypervisor;
    private readonly IPlatformEvents _events;
    private readonly Func<DateTimeOffset> _clock;
    private readonly Func<long> _monotonicNs = HostDeadlineTimer.MonotonicNs;
    private readonly List<IDisposable> _hostResources = new();
    private readonly DeviceBus _pio = new("port I/O");
    private readonly DeviceBus _mmio = new("MMIO");
    private readonly List<SerialPort> _serialPorts = new();
    private readonly List<(string, Uart16550)> _uarts = new();
    private IVirtualMachine? _vm;
    private GuestMemory? _memory;
    private BootRom? _rom;
    private FlashImage? _flash;

    /// <summary>The memory slot of a boot ROM: RAM takes slots 0 and 1 (below and above the PCI hole).</summary>
    public const int BootRomSlot = 2;

    /// <summary>The memory slot of a UEFI variable store's flash window while it is in read-array mode.</summary>
    public const int FlashSlot = 3;

    public VmBuilder(VmSpecification spec, IHypervisor hypervisor, IPlatformEvents events, Func<DateTimeOffset>? clock = null)
    {
        _spec = spec;
        _hypervisor = hypervisor;
        _events = events;
        _clock = clock ?? (() => DateTimeOffset.UtcNow);
    }

    public Machine Build()
    {
        var problems = _spec.Validate(_hypervisor.MaxVcpus, Native.HostMemory.TotalBytes() ?? ulong.MaxValue);
        if (problems.Count > 0) throw new VmConfigurationException(problems);
        var vcpus = new List<IVcpu>();
        try
        {
            _vm = _hypervisor.CreateVm();
            if (_spec.IgnoreUnknownMsrs) _vm.EnableUnknownMsrExits();
            var picIrqs = new Dictionary<int, int>(PlatformLayout.PciGsiCount);
            for (int gsi = PlatformLayout.FirstPciGsi; gsi < PlatformLayout.FirstPciGsi + PlatformLayout.PciGsiCount; gsi++)
                picIrqs[gsi] = PlatformLayout.PciPicIrq(gsi);
            _vm.SetInterruptRouting(picIrqs);
            AttachMemory();
            // The kernel first: a bad image is refused before any disk image is opened (or created).
            var kernel = LoadFirmware();
            var post = AttachPostPort();
            AttachI8042();
            AttachRtc();
            var pci = AttachPciRoot();
            AttachPciDevices(pci);
            AttachComPorts();
            var power = AttachPowerManagement();
            AttachHpet();
            // Firmware from a boot ROM builds its own tables from fw_cfg, in the low RAM the ROM copy occupies.
            var (acpi, smbios) = BuildFirmwareTables(writeToRam: _rom == null);
            AttachFwCfg(acpi, smbios);
            for (int i = 0; i < _spec.Vcpus; i++) vcpus.Add(_vm.CreateVcpu(i, _spec.Vcpus, _spec.X2Apic));
            // Firmware from a ROM programs the MTRRs itself and expects them off, as a CPU leaves reset (OVMF checks).
            if (_rom == null) SetMemoryTypes(vcpus);
            vcpus[0].SetBootState(kernel.EntryState);   // APs wait for INIT/SIPI from the BSP
            return new Machine
            {
                Vm = _vm, Memory = _memory!, PortIo = _pio, Mmio = _mmio,
                Dispatcher = new ExitDispatcher(_pio, _mmio, _spec.StrictIo),
                Vcpus = vcpus, Kernel = kernel, Pci = pci, Post = post,
                SerialPorts = _serialPorts, Uarts = _uarts, Power = power, Acpi = _spec.Acpi,
                HostResources = _hostResources, Virtio = _virtio, Ahci = _ahci, Warnings = _warnings, Rom = _rom, Flash = _flash,
            };
        }
        catch
        {
            foreach (var r in _hostResources) r.Dispose();
            foreach (var s in _serialPorts) s.Dispose();
            foreach (var v in vcpus) v.Dispose();
            _vm?.Dispose();
            _memory?.Dispose();
            _rom?.Dispose();
            _flash?.Dispose();
            throw;
        }
    }

    /// <summary>The MTRRs firmware leaves behind: RAM write-back, the MMIO below 4 GiB (PCI window, ECAM, IOAPIC, HPET,
    /// LAPIC, the top of the 32-bit space) and the 64-bit PCI window uncacheable. Every vCPU gets the same, as the
    /// OS checks that they agree.</summary>
    private void SetMemoryTypes(List<IVcpu> vcpus)
    {
        var types = new X86MemoryTypes([
            new UncachedRange(X86Layout.PciHoleStart, X86Layout.FourGiB - X86Layout.PciHoleStart),
            new UncachedRange(PlatformLayout.Mmio64Start(HighMemoryBytes), PlatformLayout.Mmio64Size)]);
        IReadOnlyList<UncachedRange> undescribed = [];
        foreach (var vcpu in vcpus) undescribed = vcpu.SetMemoryTypes(types);
        foreach (var r in undescribed)
            _warnings.Add($"the vCPUs' MTRRs cannot mark 0x{r.Start:X}-0x{r.End - 1:X} uncacheable; it stays write-back");
    }

    /// <summary>RAM above 4 GiB (the second region of bhyve's layout), or 0.</summary>
    private ulong HighMemoryBytes => _memory!.Regions.Count > 1 ? _memory.Regions[1].Size : 0;

    private void AttachMemory()
    {
        _memory = new GuestMemory(X86Layout.RamRegions(_spec.MemoryBytes), _spec.CoreDumpIncludesMemory);
        for (int i = 0; i < _memory.Regions.Count; i++)
            _vm!.MapMemory(i, _memory.Regions[i].Start.Value, _memory.HostAddress(i), _memory.Regions[i].Size);
    }

    private PostCode AttachPostPort()
    {
        var post = new PostCode();
        _pio.Register(X86Layout.PostPort, 1, new ByteRegisterBusAdapter(post), "POST port");
        return post;
    }

    private void AttachI8042()
    {
        var kbc = new I8042(() => _events.RequestStop(VmExitStatus.Reset, "reset requested through the i8042 (port 0x64 <- 0xFE)"));
        // Ports 0x60 and 0x64 as one 5-byte range; the device answers offsets 0 and 4.
        _pio.Register(X86Layout.I8042DataPort, 5, new ByteRegisterBusAdapter(kbc), "i8042");
    }

    private void AttachRtc()
    {
        Rtc? rtc = null;
        var deadline = new HostDeadlineTimer(_monotonicNs, () => rtc!.Poll());
        _hostResources.Add(deadline);
        rtc = new Rtc(_clock, _spec.RtcUtc, _memory!.Regions[0].Size, HighMemoryBytes, irq: new GsiLine(_vm!, X86Layout.RtcIrq), deadline: deadline, monotonicNs: _monotonicNs,
            vcpuCount: _spec.Vcpus);
        _pio.Register(X86Layout.RtcPort, 2, new ByteRegisterBusAdapter(rtc), "RTC/CMOS");
    }

    private PciRootBus AttachPciRoot()
    {
        var pci = new PciRootBus(value =>
        {
            // CF9 reset control: RST_CPU (bit 2) performs the reset selected by bits 1 and 3.
            if ((value & 0x04) != 0) _events.RequestStop(VmExitStatus.Reset, $"reset requested through port 0xCF9 (0x{value:X2})");
        }, _pio, _mmio);
        _pio.Register(X86Layout.PciConfigAddressPort, 8, pci, "PCI configuration");
        _mmio.Register(PlatformLayout.EcamBase, PlatformLayout.EcamSize, new PciEcam(pci), "PCI ECAM");
        return pci;
    }

    /// <summary>Creates each -s device, gives its BARs addresses and maps them, and wires INTx to the
    /// IOAPIC pin the _PRT and MP table name for its slot.</summary>
    private void AttachPciDevices(PciRootBus pci)
    {
        var allocator = new PciResourceAllocator(PlatformLayout.Mmio64Start(HighMemoryBytes));
        int bus = 0;
        allocator.BeginBus(0);   // bus 0 always exists: the host bridge the LPC devices hang off
        foreach (var d in DevicesByBus())
        {
            if (d.Address.Bus != bus) allocator.BeginBus(bus = d.Address.Bus);
            int gsi = PlatformLayout.PciGsi(d.Address.Slot, 0);
            var intx = new GsiLine(_vm!, gsi);
            var msi = new HypervisorMsiSink(_vm!);   // per function: each vector owns an irqfd route
            IPciFunction function = d.Device switch
            {
                HostBridgeSpec bridge => CreateHostBridge(bridge),
                LpcSpec => ChipsetModel == HostBridgeModel.Q35 ? ChipsetFunctions.Ich9Lpc() : PciIdentityFunction.LpcBridge(),
                UartSpec uart => CreatePciUart(d, uart, msi, intx),
                TestDevSpec => new PciTestDevice(msi, intx, _spec.SingleVectorMsi),
                VirtioBlockSpec disk => CreateVirtio(CreateBlock(d, disk), msi, intx),
                VirtioRngSpec => CreateVirtio(new VirtioEntropy(), msi, intx),
                VirtioNetSpec net => CreateVirtio(CreateNet(d, net), msi, intx),
                AhciSpec ahci => CreateAhci(d, ahci, msi, intx),
                _ => throw new VmConfigurationException([$"{d}: unknown emulation '{d.Emulation}'"]),
            };
            // The Interrupt Line register names the 8259 input (what PIC-mode guests read); APIC-mode
            // guests take the GSI from _PRT or the MP table.
            if (function.Bars.Count > 0) function.Config.Write(PciConfigSpace.InterruptLine, 1, (uint)PlatformLayout.PciPicIrq(gsi));
            pci.Add(d.Address, function);
            _hostResources.Add(msi);   // after the function, so its device threads stop before the routes go
            allocator.Allocate(function);
            pci.UpdateMappings(function);
        }
        _pciBuses = allocator.Finish();
        // i440FX keeps its ACPI PM registers in the PIIX4's function 3, which no -s names (Validate keeps 0:1:3 free).
        if (ChipsetModel == HostBridgeModel.I440fx) pci.Add(ChipsetFunctions.Piix4PmAddress, ChipsetFunctions.Piix4PowerManagement());
    }

    /// <summary>The -s devices by bus, in -s order within a bus (a stable sort, as OrderBy was; plain loops keep the
    /// machine build free of generic code the runtime would compile at start).</summary>
    private PciDeviceSpec[] DevicesByBus()
    {
        var devices = new PciDeviceSpec[_spec.PciDevices.Count];
        for (int i = 0; i < devices.Length; i++)
        {
            var d = _spec.PciDevices[i];
            int j = i - 1;
            for (; j >= 0 && devices[j].Address.Bus > d.Address.Bus; j--) devices[j + 1] = devices[j];
            devices[j + 1] = d;
        }
        return devices;
    }

    /// <summary>The -s LPC bridge, or null.</summary>
    private PciDeviceSpec? Lpc
    {
        get
        {
            foreach (var d in _spec.PciDevices) if (d.Device is LpcSpec) return d;
            return null;
        }
    }

    /// <summary>The chipset a host bridge's model= names, or bhyve's.</summary>
    private HostBridgeModel ChipsetModel
    {
        get
        {
            foreach (var d in _spec.PciDevices)
                if (d.Device is HostBridgeSpec { Model: not HostBridgeModel.Bhyve } bridge) return bridge.Model;
            return HostBridgeModel.Bhyve;
        }
    }

    private static IPciFunction CreateHostBridge(HostBridgeSpec bridge)
    {
        if (bridge.Model == HostBridgeModel.I440fx) return ChipsetFunctions.I440fxHostBridge();
        if (bridge.Model == HostBridgeModel.Q35) return ChipsetFunctions.Q35HostBridge();
        var function = bridge.Amd ? PciIdentityFunction.AmdHostBridge() : PciIdentityFunction.HostBridge();
        if (bridge.Vendor is null && bridge.DeviceId is null) return function;
        var config = new PciConfigSpace(bridge.Vendor ?? function.Config.Vendor, bridge.DeviceId ?? function.Config.Device, 0x06, 0x00, 0x00);
        return new PciIdentityFunction(function.Name, config);
    }

    private IReadOnlyList<PciBusWindows> _pciBuses = [];

    private VirtioBlock CreateBlock(PciDeviceSpec d, VirtioBlockSpec disk)
    {
        var options = ImageGeometry.Resolve(disk.Options);   // the geometry the image records, for options left out
        var backend = BlockBackends.Open(options);
        try { return new VirtioBlock(backend, options.LogicalSectorSize, options.PhysicalSectorSize, $"virtio-blk {d.Address}"); }
        catch { backend.Dispose(); throw; }
    }

    /// <summary>An AHCI controller with a drive per port: disks over their block backends, CD/DVD drives over their
    /// medium (opened read-only) or empty.</summary>
    private AhciController CreateAhci(PciDeviceSpec d, AhciSpec ahci, IMsiSink msi, IInterruptLine intx)
    {
        var drives = new List<IAhciDrive>();
        try
        {
            for (int port = 0; port < ahci.Ports.Count; port++)
            {
                string name = $"{ahci.Emulation} {d.Address} port {port}";
                drives.Add(ahci.Ports[port] switch
                {
                    AhciDiskPort disk => CreateAtaDisk(name, disk.Options),
                    AhciCdromPort cd => new AtapiCdrom(name, cd.MediumPath is { } medium ? OpenMedium(medium) : null),
                    _ => throw new VmConfigurationException([$"{d}: port {port}: unknown drive"]),
                });
            }
            var controller = new AhciController($"ahci {d.Address}", drives, _memory!, msi, intx);
            _hostResources.Add(controller);
            _ahci.Add((d.Address, controller));
            return controller;
        }
        catch
        {
            foreach (var drive in drives) drive.Dispose();
            throw;
        }
    }

    private readonly List<(PciAddress, AhciController)> _ahci = new();

    private static AtaDisk CreateAtaDisk(string name, BlockDeviceOptions disk)
    {
        var options = ImageGeometry.Resolve(disk);
        var backend = BlockBackends.Open(options);
        try { return new AtaDisk(name, backend, options.LogicalSectorSize, options.PhysicalSectorSize); }
        catch { backend.Dispose(); throw; }
    }

    /// <summary>A CD/DVD drive's medium: an ISO (or any image) opened read-only with a shared lock, so one ISO can
    /// be in several drives and VMs at once.</summary>
    public static IBlockBackend OpenMedium(string path) => BlockBackends.Open(new BlockDeviceOptions { Path = path, ReadOnly = true });

    /// <summary>A network adapter: its backend (passt started, or the TAP opened) and the device with its MAC.</summary>
    private VirtioNet CreateNet(PciDeviceSpec d, VirtioNetSpec net)
    {
        var options = net.Options;
        IReadOnlyList<INetBackend> backends;
        try
        {
            if (options.Backend == NetBackendKind.Tap)
            {
                // One queue pair per vCPU (the guest's driver then gives each CPU its own queues), or queues=N.
                int queues = options.Queues ?? Math.Min(_spec.Vcpus, VirtioNet.MaxPairs);
                backends = TapBackend.OpenQueues(d.ToString(), options.TapName!, queues, required: options.Queues != null, out string? note);
                if (note != null) _warnings.Add(note);
            }
            else backends = [PasstBackend.Start(d.ToString(), options.PortForwards)];
        }
        catch (NetBackendException e) { throw new VmConfigurationException([e.Message]); }
        return new VirtioNet($"virtio-net {d.Address}", options.MacFor(_spec.EffectiveUuid, d.Address), backends);
    }

    private VirtioPciDevice CreateVirtio(IVirtioDevice device, IMsiSink msi, IInterruptLine intx)
    {
        VirtioPciDevice transport;
        try { transport = new VirtioPciDevice(device, _memory!, msi, intx, new HypervisorDoorbells(_vm!), _spec.SingleVectorMsi); }
        catch { device.Dispose(); throw; }
        _hostResources.Add(transport);
        _virtio.Add(transport);
        return transport;
    }

    private readonly List<VirtioPciDevice> _virtio = new();

    private PciUart CreatePciUart(PciDeviceSpec d, UartSpec uart, IMsiSink msi, IInterruptLine intx)
    {
        var serial = new SerialPort($"uart at {d.Address}", uart.Backends);
        _serialPorts.Add(serial);
        var device = new PciUart(serial, msi, intx);
        serial.Attach(device.Uart);
        _uarts.Add(($"uart {d.Address}", device.Uart));
        return device;
    }

    private void AttachComPorts()
    {
        if (Lpc == null) return;
        AttachUart("com1", X86Layout.Com1Port, X86Layout.Com1Irq, _spec.Com1);
        AttachUart("com2", X86Layout.Com2Port, X86Layout.Com2Irq, _spec.Com2);
    }

    private void AttachUart(string name, ushort port, int irq, IReadOnlyList<SerialBackendSpec>? backends)
    {
        var serial = new SerialPort(name, backends ?? []);
        _serialPorts.Add(serial);
        var uart = new Uart16550(serial, new GsiLine(_vm!, irq));
        serial.Attach(uart);
        _uarts.Add((name, uart));
        _pio.Register(port, 8, new ByteRegisterBusAdapter(uart), name);
    }

    private PowerManagement AttachPowerManagement()
    {
        var power = new PowerManagement(_monotonicNs, new GsiLine(_vm!, PlatformLayout.SciIrq), slpTyp =>
        {
            if (slpTyp == PlatformLayout.SlpTypS5) _events.RequestStop(VmExitStatus.PoweredOff, "the guest powered off (ACPI S5)");
        });
        _pio.Register(PlatformLayout.Pm1aEventPort, 12, power, "ACPI PM1/PM timer");
        return power;
    }

    private void AttachHpet()
    {
        Hpet? hpet = null;
        var deadline = new HostDeadlineTimer(_monotonicNs, () => hpet!.Poll());
        _hostResources.Add(deadline);
        hpet = new Hpet(_monotonicNs, gsi => new GsiLine(_vm!, gsi), deadline);
        _mmio.Register(PlatformLayout.HpetBase, 0x400, hpet, "HPET");
    }

    /// <summary>ACPI with -A, the MP table unless -Y, and SMBIOS, all from one platform description; written to
    /// their areas below 1 MiB when <paramref name="writeToRam"/> (firmware from a boot ROM takes them from
    /// fw_cfg instead), and returned for fw_cfg.</summary>
    private (IReadOnlyList<PlacedTable>? Acpi, byte[] Smbios) BuildFirmwareTables(bool writeToRam)
    {
        var lpc = Lpc;
        var platform = new PlatformDescription
        {
            Vcpus = _spec.Vcpus, X2Apic = _spec.X2Apic, HasLpc = lpc != null,
            LpcSlot = lpc?.Address.Slot ?? 31, LpcFunction = lpc?.Address.Function ?? 0,
            LowMemoryBytes = _memory!.Regions[0].Size, HighMemoryBytes = HighMemoryBytes,
            PciSlots = PciSlots(),
            PciBuses = _pciBuses,
        };
        // Every table is built and measured before any is written: one that cannot fit its area is a
        // one-line refusal naming the flag; the MP table alone is left out instead (the MADT has the CPUs).
        IReadOnlyList<PlacedTable>? acpi = null;
        byte[]? mp = null, smbios;
        try
        {
            if (_spec.Acpi) acpi = AcpiTables.Build(platform);
            if (_spec.MpTable)
            {
                if (MpTable.WhyOmitted(platform) is { } why) _warnings.Add(why);
                else mp = MpTable.Build(platform, PlatformLayout.MpFloatingPointer);
            }
            var uuid = _spec.EffectiveUuid;
            smbios = SmbiosTables.Build(platform, uuid, _spec.Name, PlatformLayout.SmbiosEntryPoint);
        }
        catch (FirmwareTableTooLargeException e) { throw new VmConfigurationException([e.Message]); }
        if (!writeToRam) return (acpi, smbios);
        if (acpi != null) AcpiTables.Write(_memory, acpi);
        if (mp != null) FirmwareArea.MpTable.Write(_memory, PlatformLayout.MpFloatingPointer, mp);
        FirmwareArea.Smbios.Write(_memory, PlatformLayout.SmbiosEntryPoint, smbios);
        return (acpi, smbios);
    }

    /// <summary>The (bus, slot) pairs with a -s device, sorted, each once.</summary>
    private (int Bus, int Slot)[] PciSlots()
    {
        var slots = new (int Bus, int Slot)[_spec.PciDevices.Count];
        for (int i = 0; i < slots.Length; i++)
        {
            var d = _spec.PciDevices[i];
            int j = i - 1;
            for (; j >= 0 && (slots[j].Bus > d.Address.Bus || (slots[j].Bus == d.Address.Bus && slots[j].Slot > d.Address.Slot)); j--) slots[j + 1] = slots[j];
            slots[j + 1] = (d.Address.Bus, d.Address.Slot);
        }
        int unique = 0;
        foreach (var slot in slots)
            if (unique == 0 || slots[unique - 1] != slot) slots[unique++] = slot;
        return slots[..unique];
    }

    /// <summary>fw_cfg on every VM, as QEMU always has one: boot ROMs read the memory map, tables and kernel
    /// from it, and so can any guest. The items come from <see cref="FwCfgContent.Build"/> alone.</summary>
    private void AttachFwCfg(IReadOnlyList<PlacedTable>? acpi, byte[] smbios)
    {
        var kernel = _spec.Firmware is KexecFirmware k ? new FwCfgKernel(k.Kernel, k.Initrd, k.CommandLine) : null;
        var items = FwCfgContent.Build(_spec, _memory!, acpi, smbios, kernel);
        _hostResources.Add(items);
        _pio.Register(FwCfgSelectors.SelectorPort, FwCfgSelectors.PortCount, new FwCfgDevice(items, _memory!), "fw_cfg");
    }

    private readonly List<string> _warnings = new();

    private LoadedKernel LoadBootRom(BootromFirmware firmware)
    {
        _rom = BootRom.Load(firmware.Rom);
        var loaded = _rom.MapInto(_vm!, BootRomSlot, _mmio, _memory!);
        if (firmware.Vars != null) AttachFlash(firmware.Vars, _rom.Size);
        return loaded;
    }

    /// <summary>The VM's UEFI variable store as a CFI flash just below the ROM, where QEMU puts OVMF's second flash:
    /// read straight from a read-only slot in read-array mode, every guest write to the device, which writes the
    /// changes through to the file.</summary>
    private void AttachFlash(string path, ulong romBytes)
    {
        FlashImage image;
        try { image = FlashImage.Open(path); }
        catch (IOException e) { throw new VmConfigurationException([$"-l bootrom: variable store: {e.Message}"]); }
        _flash = image;   // freed after the VM, whose slot maps it (Machine.Dispose)
        if (romBytes + (ulong)image.Length > X86Layout.BootRomMaxSize)
            throw new VmConfigurationException([$"-l bootrom: the ROM {romBytes} bytes and the variable store {path} ({image.Length} bytes) together exceed the {X86Layout.BootRomMaxSize >> 20} MiB below 4 GiB a boot ROM may take"]);
        ulong address = CfiFlash.WindowAddress(romBytes, (ulong)image.Length);
        var flash = new CfiFlash(image, new HypervisorFlashWindow(_vm!, FlashSlot, address, image));
        _mmio.Register(address, (ulong)image.Length, flash, "UEFI variable flash");
    }

    private LoadedKernel LoadFirmware() => _spec.Firmware switch
    {
        KexecFirmware k => new LinuxLoader(k.Kernel, k.Initrd, k.CommandLine, k.LoadMode).Load(_memory!),
        MultibootFirmware m => new MultibootLoader(m.Kernel, m.Modules, m.CommandLine).Load(_memory!),
        BootromFirmware b => LoadBootRom(b),
        _ => throw new VmConfigurationException([$"-f: {_spec.Firmware} is not supported"]),
    };
}

/// <summary>A flash window over a hypervisor memory slot: mapped read-only in read-array mode, removed otherwise so
/// reads exit to the device.</summary>
internal sealed class HypervisorFlashWindow(IVirtualMachine vm, int slot, ulong address, FlashImage image) : IFlashWindow
{
    public void MapArray() => vm.MapMemory(slot, address, image.HostAddress, (ulong)image.Length, readOnly: true);

    public void UnmapArray() => vm.UnmapMemory(slot);
}

/// <summary>Doorbells through the hypervisor (KVM ioeventfd).</summary>
internal sealed class HypervisorDoorbells(IVirtualMachine vm) : IDoorbells
{
    public bool TryAttach(Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) =>
        vm.TryAttachDoorbell(target, address, width, portIo, dataMatch);

    public void Detach(Native.EventFd target, ulong address, int width, bool portIo, ulong? dataMatch) =>
        vm.DetachDoorbell(target, address, width, portIo, dataMatch);
}

/// <summary>The VM specification cannot be built; every problem is listed.</summary>
public sealed class VmConfigurationException(IReadOnlyList<string> problems)
    : Exception(string.Join(Environment.NewLine, problems))
{
    public IReadOnlyList<string> Problems => problems;
}
