namespace Xhyve.Vmm.Devices.Flash;

/// <summary>
/// The guest-physical window of a flash device as the platform maps it. In read-array mode the window is the
/// flash image mapped read-only, so the guest reads it at memory speed and only its writes exit to the device;
/// in every other mode (status, identifier, query) the window is unmapped so reads exit as MMIO too. The device
/// depends on this interface alone; the composition root implements it over the hypervisor's memory slots.
/// </summary>
public interface IFlashWindow
{
    /// <summary>Maps the flash image read-only at the window (read-array mode). Called only while unmapped.</summary>
    void MapArray();

    /// <summary>Removes the mapping, so reads of the window exit to the device. Called only while mapped.</summary>
    void UnmapArray();
}
