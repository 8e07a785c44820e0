namespace Xhyve.Vmm.Devices.Ahci.Atapi;

/// <summary>A SCSI sense key with its additional sense code and qualifier (SPC-3 sense data):
/// what REQUEST SENSE reports about the last CHECK CONDITION or a pending unit attention.</summary>
public readonly record struct SenseCode(byte Key, byte Asc, byte Ascq)
{
    /// <summary>Sense keys (SPC-3).</summary>
    public const byte KeyNoSense = 0x00, KeyNotReady = 0x02, KeyMediumError = 0x03, KeyIllegalRequest = 0x05, KeyUnitAttention = 0x06;

    /// <summary>No error to report.</summary>
    public static readonly SenseCode None = new(KeyNoSense, 0x00, 0x00);
    /// <summary>The drive is empty.</summary>
    public static readonly SenseCode MediumNotPresent = new(KeyNotReady, 0x3A, 0x00);
    /// <summary>The host could not read the image.</summary>
    public static readonly SenseCode UnrecoveredReadError = new(KeyMediumError, 0x11, 0x00);
    /// <summary>An opcode the drive does not implement.</summary>
    public static readonly SenseCode InvalidOperationCode = new(KeyIllegalRequest, 0x20, 0x00);
    /// <summary>A read outside the medium.</summary>
    public static readonly SenseCode LbaOutOfRange = new(KeyIllegalRequest, 0x21, 0x00);
    /// <summary>A CDB field the drive does not support, or a transfer the PRDT cannot hold.</summary>
    public static readonly SenseCode InvalidFieldInCdb = new(KeyIllegalRequest, 0x24, 0x00);
    /// <summary>MODE SENSE asked for saved values.</summary>
    public static readonly SenseCode SavingParametersNotSupported = new(KeyIllegalRequest, 0x39, 0x00);
    /// <summary>An eject while the guest locked the medium in.</summary>
    public static readonly SenseCode MediumRemovalPrevented = new(KeyIllegalRequest, 0x53, 0x02);
    /// <summary>A medium was inserted: the guest must re-read capacity and contents.</summary>
    public static readonly SenseCode NotReadyToReadyChange = new(KeyUnitAttention, 0x28, 0x00);
    /// <summary>Power on, reset or bus device reset occurred.</summary>
    public static readonly SenseCode PowerOnReset = new(KeyUnitAttention, 0x29, 0x00);
}
