namespace Xhyve.Vmm.Devices;

/// <summary>
/// A device's counters for the --verbose report and the control API's "counters", so the report asks every
/// device the same question instead of testing each type. Names are snake_case and stable (scripts read them);
/// the order is fixed; values only grow.
/// </summary>
public interface IDeviceCounters
{
    IEnumerable<KeyValuePair<string, long>> Counters { get; }
}
