using System.Buffers.Binary;
using Xhyve.Vmm.Devices.Pci;
using Xhyve.Vmm.Firmware.Acpi;

namespace Xhyve.Vmm.Devices.Chipset;

/// <summary>
/// The PCI functions of the chipsets UEFI firmware knows (-s 0,hostbridge,model=i440fx|q35). OVMF's PlatformPei reads
/// the host bridge's device id at 0:0.0 and stops on any id but i440FX (0x1237) or Q35 (0x29C0); it then finds the
/// ACPI PM block, and so its timer, through the PIIX4 PM function (0:1.3) or the ICH9 LPC bridge (0:31.0), and on
/// Q35 programs the MCH's PCIEXBAR. The registers here say where OUR fixed PM block and ECAM are, with their enable
/// bits already set, so the firmware keeps them rather than moving them: they are read-only, since the platform
/// cannot relocate either. Registers that only record routing (PAM, PIRQ, RCBA) keep what the guest writes and act on
/// nothing.
/// </summary>
public static class ChipsetFunctions
{
    /// <summary>The host bridge device ids OVMF accepts.</summary>
    public const ushort IntelVendor = 0x8086, I440fxDevice = 0x1237, Q35MchDevice = 0x29C0, Piix4PmDevice = 0x7113, Ich9LpcDevice = 0x2918;

    /// <summary>Where the PIIX4 power-management function sits on an i440FX machine.</summary>
    public static readonly PciAddress Piix4PmAddress = new(0, 1, 3);

    /// <summary>Where the ICH9 LPC bridge (PMBASE, ACPI_CNTL) sits on a Q35 machine.</summary>
    public static readonly PciAddress Ich9LpcAddress = new(0, 31, 0);

    /// <summary>PIIX4 PM: PMBA (I/O base, bit 0 = I/O space) and PMREGMISC (bit 0 PMIOSE: the PM I/O space is on).</summary>
    public const int Piix4Pmba = 0x40, Piix4PmRegMisc = 0x80;

    /// <summary>ICH9 LPC: PMBASE, ACPI_CNTL (bit 7 ACPI_EN; bits 2:0 SCI IRQ select, 0 = IRQ 9), the PIRQ routing
    /// registers A-D and E-H, and RCBA.</summary>
    public const int Ich9PmBase = 0x40, Ich9AcpiCntl = 0x44, Ich9PirqA = 0x60, Ich9PirqE = 0x68, Ich9Rcba = 0xF0;

    /// <summary>Q35 MCH: PCIEXBAR (bit 0 enable, bits 2:1 length: 0 = 256 buses) and the PAM registers.</summary>
    public const int Q35PciExBar = 0x60, Q35Pam0 = 0x90, I440fxPam0 = 0x59;

    /// <summary>PMBA/PMBASE as the chipsets hold it: our PM block's port with the I/O-space bit.</summary>
    public const uint PmBaseRegister = PlatformLayout.Pm1aEventPort | 1u;

    /// <summary>The i440FX PCI and memory controller (8086:1237, revision 2), with its PAM registers kept.</summary>
    public static PciIdentityFunction I440fxHostBridge()
    {
        var config = new PciConfigSpace(IntelVendor, I440fxDevice, 0x06, 0x00, 0x00, revision: 0x02);
        config.Define(I440fxPam0, new byte[7], Ones(7));
        return new PciIdentityFunction("i440fx hostbridge", config);
    }

    /// <summary>The PIIX4 power-management function (8086:7113, class 06/80) naming the PM block at
    /// <see cref="PlatformLayout.Pm1aEventPort"/> with PMIOSE set.</summary>
    public static PciIdentityFunction Piix4PowerManagement()
    {
        var config = new PciConfigSpace(IntelVendor, Piix4PmDevice, 0x06, 0x80, 0x00, revision: 0x03);
        config.Define(Piix4Pmba, Dword(PmBaseRegister), new byte[4]);
        config.Define(Piix4PmRegMisc, [0x01], [0x00]);
        return new PciIdentityFunction("piix4 pm", config);
    }

    /// <summary>The Q35 MCH (8086:29C0) with PCIEXBAR naming the ECAM at <see cref="PlatformLayout.EcamBase"/> (256
    /// buses, enabled) and its PAM registers kept.</summary>
    public static PciIdentityFunction Q35HostBridge()
    {
        var config = new PciConfigSpace(IntelVendor, Q35MchDevice, 0x06, 0x00, 0x00);
        config.Define(Q35PciExBar, Qword(PlatformLayout.EcamBase | 1), new byte[8]);
        config.Define(Q35Pam0, new byte[7], Ones(7));
        return new PciIdentityFunction("q35 mch", config);
    }

    /// <summary>The ICH9 LPC bridge (8086:2918, class 06/01) naming the PM block with ACPI_EN set and the SCI on IRQ 9;
    /// its PIRQ routing registers start disabled (0x80) and RCBA starts off.</summary>
    public static PciIdentityFunction Ich9Lpc()
    {
        var config = new PciConfigSpace(IntelVendor, Ich9LpcDevice, 0x06, 0x01, 0x00, revision: 0x02);
        config.Define(Ich9PmBase, Dword(PmBaseRegister), new byte[4]);
        config.Define(Ich9AcpiCntl, [0x80], [0x00]);
        byte[] disabled = [0x80, 0x80, 0x80, 0x80], routable = [0x8F, 0x8F, 0x8F, 0x8F];
        config.Define(Ich9PirqA, disabled, routable);
        config.Define(Ich9PirqE, disabled, routable);
        config.Define(Ich9Rcba, new byte[4], Dword(0xFFFF_C001));
        return new PciIdentityFunction("ich9 lpc", config);
    }

    private static byte[] Ones(int n) => Enumerable.Repeat((byte)0xFF, n).ToArray();

    private static byte[] Dword(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        return b;
    }

    private static byte[] Qword(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }
}
