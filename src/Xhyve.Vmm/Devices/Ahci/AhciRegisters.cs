namespace Xhyve.Vmm.Devices.Ahci;

/// <summary>Register offsets and bits of an AHCI 1.3.1 HBA (chapter 3), the command list and the FIS layouts
/// (chapter 4, SATA 3.x §10.5) the controller and its tests share.</summary>
public static class AhciRegisters
{
    // Generic host control (§3.1).
    public const int Cap = 0x00, Ghc = 0x04, Is = 0x08, Pi = 0x0C, Vs = 0x10, CccCtl = 0x14, CccPorts = 0x18,
        EmLoc = 0x1C, EmCtl = 0x20, Cap2 = 0x24, Bohc = 0x28;
    public const uint CapS64A = 1u << 31, CapSncq = 1u << 30, CapSclo = 1u << 24, CapIssGen3 = 3u << 20, CapSam = 1u << 18;
    public const int CapNcsShift = 8;
    public const uint GhcHr = 1, GhcIe = 1 << 1, GhcAe = 1u << 31;
    public const uint Version = 0x0001_0301;

    // Port registers (§3.3): block of 0x80 bytes per port from 0x100.
    public const int PortBase = 0x100, PortSize = 0x80, MaxPorts = 32, Slots = 32;
    public const int PxClb = 0x00, PxClbu = 0x04, PxFb = 0x08, PxFbu = 0x0C, PxIs = 0x10, PxIe = 0x14, PxCmd = 0x18,
        PxTfd = 0x20, PxSig = 0x24, PxSsts = 0x28, PxSctl = 0x2C, PxSerr = 0x30, PxSact = 0x34, PxCi = 0x38, PxSntf = 0x3C;

    // PxIS / PxIE bits.
    public const uint IsDhrs = 1, IsPss = 1 << 1, IsDss = 1 << 2, IsSdbs = 1 << 3, IsUfs = 1 << 4, IsDps = 1 << 5,
        IsPcs = 1 << 6, IsDmps = 1 << 7, IsPrcs = 1 << 22, IsIpms = 1 << 23, IsOfs = 1 << 24, IsInfs = 1 << 26,
        IsIfs = 1 << 27, IsHbds = 1 << 28, IsHbfs = 1 << 29, IsTfes = 1 << 30, IsCpds = 1u << 31;
    public const uint IsDefined = 0xFDC0_00FF;

    // PxCMD bits.
    public const uint CmdSt = 1, CmdSud = 1 << 1, CmdPod = 1 << 2, CmdClo = 1 << 3, CmdFre = 1 << 4, CmdFr = 1 << 14,
        CmdCr = 1 << 15, CmdAtapi = 1 << 24, CmdDlae = 1 << 25;
    public const int CmdCcsShift = 8;

    // PxSSTS / PxSCTL / PxSERR.
    public const uint SstsPresent = 0x3, SstsGen3 = 0x30, SstsActive = 0x100;
    public const uint SerrDiagN = 1 << 16, SerrDiagX = 1 << 26;

    // Task file status bits in PxTFD.
    public const uint TfdBsy = 0x80, TfdDrq = 0x08, TfdErr = 0x01;

    // FIS types and the receive area (§4.2.1).
    public const byte FisRegH2D = 0x27, FisRegD2H = 0x34, FisSetDeviceBits = 0xA1, FisPioSetup = 0x5F;
    public const int RxDsfis = 0x00, RxPsfis = 0x20, RxRfis = 0x40, RxSdbfis = 0x58, RxUfis = 0x60, RxAreaSize = 0x100;

    // Command header (§4.2.2) and table (§4.2.3).
    public const int HeaderSize = 32, TableAcmd = 0x40, TablePrdt = 0x80, PrdtEntrySize = 16;
    public const uint HeaderWrite = 1 << 6, HeaderAtapi = 1 << 5;
}
