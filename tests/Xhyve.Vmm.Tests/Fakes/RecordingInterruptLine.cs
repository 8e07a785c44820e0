using Xhyve.Vmm.Bus;
using Xhyve.Vmm.Devices.Legacy;

namespace Xhyve.Vmm.Tests.Fakes;

/// <summary>An interrupt line that remembers its level and every transition.</summary>
internal sealed class RecordingInterruptLine : IInterruptLine
{
    public bool Level { get; private set; }
    public List<bool> Transitions { get; } = new();
    public void Set(bool level) { Level = level; Transitions.Add(level); }
}

/// <summary>A serial sink that collects transmitted bytes.</summary>
internal sealed class CollectingSerialOutput : ISerialOutput
{
    public List<byte> Bytes { get; } = new();
    public void Write(byte value) => Bytes.Add(value);
}
