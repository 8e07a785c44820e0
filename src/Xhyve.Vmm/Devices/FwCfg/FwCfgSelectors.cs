namespace Xhyve.Vmm.Devices.FwCfg;

/// <summary>The fw_cfg item selectors and I/O layout firmware expects (QEMU's docs/specs/fw_cfg.rst and
/// qemu_fw_cfg.h): the numbers are an ABI SeaBIOS, OVMF and Linux's qemu_fw_cfg driver share.</summary>
public static class FwCfgSelectors
{
    public const ushort Signature = 0x00, Id = 0x01, Uuid = 0x02, RamSize = 0x03, NoGraphic = 0x04, NbCpus = 0x05;
    public const ushort KernelAddress = 0x07, KernelSize = 0x08, InitrdAddress = 0x0A, InitrdSize = 0x0B;
    public const ushort BootMenu = 0x0E, MaxCpus = 0x0F;
    public const ushort KernelData = 0x11, InitrdData = 0x12, CommandLineAddress = 0x13, CommandLineSize = 0x14, CommandLineData = 0x15;
    public const ushort SetupAddress = 0x16, SetupSize = 0x17, SetupData = 0x18;
    public const ushort FileDirectory = 0x19, FirstFile = 0x20;

    /// <summary>Selector bit 14 asks for the write channel (ignored: items are read-only); bit 15 selects the
    /// architecture-local items (0x8000 up), of which none are served.</summary>
    public const ushort WriteChannelBit = 0x4000, ArchLocalBit = 0x8000;

    /// <summary>Feature bits of item 0x0001.</summary>
    public const uint FeatureTraditional = 1, FeatureDma = 2;

    /// <summary>The I/O ports (x86): selector (16-bit), data (8-bit), DMA address (two 32-bit big-endian halves).</summary>
    public const ushort SelectorPort = 0x510, DataPort = 0x511, DmaAddressPort = 0x514;

    /// <summary>The ports the device decodes, from <see cref="SelectorPort"/> through the low DMA half at 0x518.</summary>
    public const int PortCount = 12;

    /// <summary>A file name's fixed field in the directory (with its NUL).</summary>
    public const int MaxFileName = 56;

    /// <summary>What a read of the DMA address register returns: "QEMU CFG", most significant byte first.</summary>
    public const ulong DmaSignature = 0x5145_4D55_2043_4647;

    /// <summary>FWCfgDmaAccess.control bits.</summary>
    public const uint DmaError = 0x01, DmaRead = 0x02, DmaSkip = 0x04, DmaSelect = 0x08, DmaWrite = 0x10;
}
