namespace Xhyve.Vmm;

/// <summary>The product version the engine reports (-v, SMBIOS).</summary>
public static class BuildInfo
{
    public const string Version = "0.1.0";
}
