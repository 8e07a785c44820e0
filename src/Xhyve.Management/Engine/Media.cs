using System.Text.Json;
using Xhyve.Vmm.Config;

namespace Xhyve.Management.Engine;

/// <summary>A CD/DVD drive of a running engine, as the control API's media command reports it.</summary>
/// <param name="Drive">The drive's controller PCI address and port, e.g. 0:5:0/0.</param>
/// <param name="Medium">The ISO image in the drive (absolute), or null when it is empty.</param>
/// <param name="Locked">Whether the guest has prevented medium removal.</param>
public sealed record DriveMedium(string Drive, string? Medium, bool Locked);

/// <summary>The control API's media commands (docs/control-api.md): list the CD drives, eject, insert.</summary>
public static class MediaCommand
{
    /// <summary>Lists the drives.</summary>
    public const string List = "media";

    /// <summary>Puts the ISO at <paramref name="path"/> (absolute; the rest of the line, spaces allowed) in the drive.</summary>
    /// <exception cref="ArgumentException">The path holds a line break, which would end the command early.</exception>
    public static string Insert(string drive, string path) =>
        path.IndexOfAny(['\n', '\r']) >= 0 ? throw new ArgumentException($"'{path}': a path sent to the engine cannot hold a line break", nameof(path))
            : $"media {drive} insert {path}";

    /// <summary>Empties the drive.</summary>
    public static string Eject(string drive) => $"media {drive} eject";

    /// <summary>The bus-0 slot and port a drive address names (S, S:F or B:S:F, with an optional /PORT; port 0 when
    /// absent), or null for one that is not such an address or not on bus 0, function 0. The engine may spell an address
    /// differently from how it was asked (0:5:0/0 for 5), so drives are compared by slot and port.</summary>
    public static (int Slot, int Port)? SlotAndPort(string drive) =>
        AhciDriveAddress.TryParse(drive, out var d) && d.Controller is { Bus: 0, Function: 0 } ? (d.Controller.Slot, d.Port) : null;

    /// <summary>The drives of a media reply ({"ok":true,"drives":[{"drive":..,"medium":..,"locked":..}]}).</summary>
    /// <exception cref="EngineException">The reply is not one.</exception>
    public static IReadOnlyList<DriveMedium> Parse(JsonElement reply)
    {
        if (reply.ValueKind != JsonValueKind.Object || !reply.TryGetProperty("drives", out var drives) || drives.ValueKind != JsonValueKind.Array)
            throw new EngineException($"the engine's media reply has no drives: {reply}");
        var list = new List<DriveMedium>();
        foreach (var d in drives.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Object || !d.TryGetProperty("drive", out var drive) || drive.ValueKind != JsonValueKind.String)
                throw new EngineException($"the engine's media reply has a drive without its address: {d}");
            string? medium = d.TryGetProperty("medium", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
            bool locked = d.TryGetProperty("locked", out var l) && l.ValueKind == JsonValueKind.True;
            list.Add(new DriveMedium(drive.GetString()!, medium, locked));
        }
        return list;
    }
}

public sealed partial class EngineHost
{
    /// <summary>The CD/DVD drives of the VM's running engine and their media.</summary>
    public IReadOnlyList<DriveMedium> Media(string name) => MediaCommand.Parse(Control(name, MediaCommand.List));

    /// <summary>Changes the medium in a drive of the VM's running engine: <paramref name="path"/> inserted, or null to
    /// eject. The guest sees a unit attention and the new medium; the engine keeps it across a guest reset.</summary>
    /// <exception cref="EngineException">The VM is not running, or the engine refused (no such drive, file missing).</exception>
    public IReadOnlyList<DriveMedium> ChangeMedium(string name, string drive, string? path) =>
        MediaCommand.Parse(Control(name, path != null ? MediaCommand.Insert(drive, path) : MediaCommand.Eject(drive)));
}
