namespace Xhyve.Management.Model;

/// <summary>The firmware files of Hyper-V's VM generations, as Debian installs them: generation 1 boots SeaBIOS
/// (package seabios), generation 2 boots UEFI from OVMF's 4 MiB flash build (package ovmf), whose README pairs
/// OVMF_CODE_4M.fd with the OVMF_VARS_4M.fd template each VM copies.</summary>
/// <param name="Rom">The ROM the engine maps (-l bootrom,ROM).</param>
/// <param name="VarsTemplate">The UEFI variable store template, or null for BIOS firmware.</param>
/// <param name="Description">What the ROM is, for messages.</param>
/// <param name="Package">The Debian package with the files.</param>
public sealed record FirmwareFiles(string Rom, string? VarsTemplate, string Description, string Package)
{
    public static readonly FirmwareFiles SeaBios = new("/usr/share/seabios/bios.bin", null, "SeaBIOS", "apt-get install seabios");
    public static readonly FirmwareFiles Ovmf = new("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "OVMF's UEFI code", "apt-get install ovmf");

    /// <summary>Generation 1 or 2's files.</summary>
    public static FirmwareFiles ForGeneration(int generation) => generation switch
    {
        1 => SeaBios,
        2 => Ovmf,
        _ => throw new ArgumentOutOfRangeException(nameof(generation), generation, "a VM generation is 1 or 2"),
    };
}
