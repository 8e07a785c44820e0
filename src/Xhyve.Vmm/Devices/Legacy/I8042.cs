using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Legacy;

/// <summary>
/// The i8042 keyboard controller, as far as a headless VM needs it: status and command byte, the
/// self-tests, no keyboard or mouse attached, and the CPU reset line (command 0xFE). Offsets: 0 = data
/// port (0x60), 4 = command/status port (0x64).
/// </summary>
public sealed class I8042(Action resetRequested) : IByteRegisterDevice
{
    private const byte StatusOutputFull = 0x01, StatusSystem = 0x04, StatusCommand = 0x08;
    private readonly Lock _lock = new();
    private byte _commandByte = 0x30;  // keyboard and aux clocks disabled, no interrupts
    private byte _status = StatusSystem;
    private byte _output;
    private byte _pendingCommand;

    public byte Read(byte offset)
    {
        lock (_lock)
        {
            if (offset == 4) return _status;
            if (offset != 0) return 0xFF;
            _status &= unchecked((byte)~StatusOutputFull);
            return _output;
        }
    }

    public void Write(byte offset, byte value)
    {
        bool reset = false;
        lock (_lock)
        {
            if (offset == 4)
            {
                _status |= StatusCommand;
                _pendingCommand = 0;
                switch (value)
                {
                    case 0x20: Respond(_commandByte); break;                 // read command byte
                    case 0x60: case 0xD1: _pendingCommand = value; break;   // write command byte / output port
                    case 0xA7: _commandByte |= 0x20; break;                 // disable aux
                    case 0xA8: _commandByte &= 0xDF; break;                 // enable aux
                    case 0xA9: Respond(0xFF); break;                        // aux interface test: no device
                    case 0xAA: Respond(0x55); break;                        // controller self-test passed
                    case 0xAB: Respond(0xFF); break;                        // keyboard interface test: no device
                    case 0xAD: _commandByte |= 0x10; break;                 // disable keyboard
                    case 0xAE: _commandByte &= 0xEF; break;                 // enable keyboard
                    case 0xFE: reset = true; break;                          // pulse the CPU reset line
                }
            }
            else if (offset == 0)
            {
                _status &= unchecked((byte)~StatusCommand);
                if (_pendingCommand == 0x60) _commandByte = value;
                else if (_pendingCommand == 0xD1 && (value & 0x01) == 0) reset = true; // output port bit 0 low = reset
                else if (_pendingCommand == 0) Respond(0xFE);           // keyboard command: no device ("resend")
                _pendingCommand = 0;
            }
        }
        if (reset) resetRequested();
    }

    private void Respond(byte value)
    {
        _output = value;
        _status |= StatusOutputFull;
    }
}
