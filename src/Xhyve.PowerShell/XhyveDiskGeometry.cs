using Xhyve.Vmm.Config;
using Xhyve.Vmm.Storage;

namespace Xhyve.PowerShell;

/// <summary>The image's geometry as Get-XhyveDisk shows it: read from the image when first asked (null when the image
/// is missing or damaged; Add-XhyveDisk and Start-XhyveVM say why).</summary>
public sealed partial class XhyveDisk
{
    private BlockDeviceOptions? _geometry;
    private bool _read;

    /// <summary>Raw, Split, Sparse or SplitSparse.</summary>
    public DiskImageFormat? Format => Geometry is { } g ? (g.SplitSize != null ? (g.Sparse ? DiskImageFormat.SplitSparse : DiskImageFormat.Split)
        : g.Sparse ? DiskImageFormat.Sparse : DiskImageFormat.Raw) : null;

    /// <summary>The virtual disk's size in bytes (for a raw image, the file's length; null for a host block device).</summary>
    public long? SizeBytes => Geometry is { } g ? g.Size ?? RawLength(g.Path) : null;

    /// <summary>The logical sector size the guest sees.</summary>
    public int? SectorSize => Geometry?.LogicalSectorSize;

    private BlockDeviceOptions? Geometry
    {
        get
        {
            if (_read) return _geometry;
            _read = true;
            try { _geometry = ImageGeometry.Resolve(BlockDeviceOptions.ParseOptions(Path, (Options ?? "").Split(','))); }
            catch (Exception e) when (e is StorageException or FormatException or IOException or UnauthorizedAccessException) { }
            return _geometry;
        }
    }

    private static long? RawLength(string path) => new FileInfo(path) is { Exists: true } f ? f.Length : null;
}
