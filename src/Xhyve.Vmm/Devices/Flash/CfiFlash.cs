using Xhyve.Vmm.Bus;

namespace Xhyve.Vmm.Devices.Flash;

/// <summary>
/// A byte-wide NOR flash with the Intel/Sharp command set (CFI primary command set 0001), as QEMU's pflash_cfi01
/// gives OVMF for its variable store. Reads in read-array mode are served by the platform's read-only mapping of the
/// image (<see cref="IFlashWindow"/>); every write, and every read in the other modes, reaches this device.
/// Programs and erases change the image and are written through to its file. Any guest offset, width or value is
/// accepted: out-of-range accesses read all-ones and are dropped, unknown commands return to read-array mode.
/// The <see cref="FlashImage"/> stays its creator's to dispose, after the VM that maps it.
/// </summary>
public sealed class CfiFlash : IBusDevice
{
    /// <summary>Erase block size: OVMF's flash layout and QEMU's PC flash use 4 KiB sectors.</summary>
    public const int BlockSize = 4096;

    public const byte ReadArrayCommand = 0xFF, ReadStatusCommand = 0x70, ClearStatusCommand = 0x50,
        ProgramCommand = 0x10, ProgramAlternateCommand = 0x40, BlockEraseCommand = 0x20, EraseConfirmCommand = 0xD0,
        ReadIdentifierCommand = 0x90, QueryCommand = 0x98;

    /// <summary>Status register bits: the write state machine is ready; an erase or program failed (both set:
    /// improper command sequence).</summary>
    public const byte StatusReady = 0x80, StatusEraseError = 0x20, StatusProgramError = 0x10;

    /// <summary>Intel's manufacturer code and a byte-wide part's device code (read-identifier mode).</summary>
    public const byte ManufacturerId = 0x89, DeviceId = 0x18;

    private enum Mode { ReadArray, ReadStatus, ReadIdentifier, Query, ProgramData, EraseConfirm }

    private readonly FlashImage _image;
    private readonly IFlashWindow _window;
    private readonly byte[] _query;
    private readonly Lock _lock = new();
    private Mode _mode = Mode.ReadArray;
    private bool _mapped;
    private byte _status = StatusReady;
    private long _programs, _erases, _writeErrors, _unknownCommands, _droppedAccesses;

    /// <summary>Starts in read-array mode with the window mapped.</summary>
    public CfiFlash(FlashImage image, IFlashWindow window)
    {
        _image = image;
        _window = window;
        _query = BuildQueryTable(image.Length);
        _window.MapArray();
        _mapped = true;
    }

    /// <summary>Whether the window is mapped (read-array mode).</summary>
    public bool ArrayMapped { get { lock (_lock) return _mapped; } }

    /// <summary>The current status register.</summary>
    public byte Status { get { lock (_lock) return _status; } }

    /// <summary>Bytes programmed, blocks erased, writes the file refused, unknown commands and accesses outside the
    /// chip, since the VM started.</summary>
    public (long Programs, long Erases, long WriteErrors, long UnknownCommands, long DroppedAccesses) Counters =>
        (Interlocked.Read(ref _programs), Interlocked.Read(ref _erases), Interlocked.Read(ref _writeErrors),
         Interlocked.Read(ref _unknownCommands), Interlocked.Read(ref _droppedAccesses));

    /// <summary>A platform reset: the chip returns to read-array mode with its status ready.</summary>
    public void Reset()
    {
        lock (_lock)
        {
            _status = StatusReady;
            Enter(Mode.ReadArray);
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        if (!InChip(offset, data.Length)) { data.Fill(0xFF); Interlocked.Increment(ref _droppedAccesses); return; }
        int at = (int)offset;
        lock (_lock)
        {
            switch (_mode)
            {
                case Mode.ReadArray:
                    // Reached only while the mapping is being set up or when the platform maps nothing.
                    _image.Bytes.Slice(at, data.Length).CopyTo(data);
                    break;
                case Mode.ReadIdentifier:
                    for (int i = 0; i < data.Length; i++) data[i] = Identifier(at + i);
                    break;
                case Mode.Query:
                    for (int i = 0; i < data.Length; i++) data[i] = ((at + i) & 0xFF) < _query.Length ? _query[(at + i) & 0xFF] : (byte)0;
                    break;
                default:
                    // Status, and the second cycle of a program or erase: the status register, in every byte.
                    data.Fill(_status);
                    break;
            }
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length == 0 || !InChip(offset, data.Length)) { Interlocked.Increment(ref _droppedAccesses); return; }
        int at = (int)offset;
        lock (_lock)
        {
            switch (_mode)
            {
                case Mode.ProgramData: Program(at, data); return;
                case Mode.EraseConfirm: Erase(at, data[0]); return;
            }
            byte command = data[0];   // a wider write carries the command in its low byte, as on a byte-wide bus
            switch (command)
            {
                case ReadArrayCommand: Enter(Mode.ReadArray); break;
                case ReadStatusCommand: Enter(Mode.ReadStatus); break;
                case ClearStatusCommand:
                    // Clears the error and ready bits and returns to read-array mode (what pflash_cfi01 does; OVMF's
                    // detection then reads 0x00 after 0x70, "cleared array status", and knows it has a flash).
                    _status = 0;
                    Enter(Mode.ReadArray);
                    break;
                case ProgramCommand or ProgramAlternateCommand: Enter(Mode.ProgramData); break;
                case BlockEraseCommand: Enter(Mode.EraseConfirm); break;
                case ReadIdentifierCommand: Enter(Mode.ReadIdentifier); break;
                case QueryCommand: Enter(Mode.Query); break;
                default:
                    Interlocked.Increment(ref _unknownCommands);
                    Enter(Mode.ReadArray);
                    break;
            }
        }
    }

    /// <summary>Programs <paramref name="data"/> at <paramref name="at"/>: as in real NOR flash a program can only
    /// clear bits (new = old AND data); only erase sets them again. Then the chip reports status.</summary>
    private void Program(int at, ReadOnlySpan<byte> data)
    {
        var target = _image.Bytes.Slice(at, data.Length);
        for (int i = 0; i < data.Length; i++) target[i] &= data[i];
        Interlocked.Increment(ref _programs);
        _status |= StatusReady;
        if (!_image.WriteThrough(at, data.Length)) { _status |= StatusProgramError; Interlocked.Increment(ref _writeErrors); }
        Enter(Mode.ReadStatus);
    }

    /// <summary>The second cycle of a block erase: 0xD0 erases the block holding <paramref name="at"/> to all-ones;
    /// anything else is an improper command sequence (both error bits), as the Intel command set defines.</summary>
    private void Erase(int at, byte confirm)
    {
        _status |= StatusReady;
        if (confirm != EraseConfirmCommand) _status |= StatusEraseError | StatusProgramError;
        else
        {
            int block = at / BlockSize * BlockSize;
            int length = Math.Min(BlockSize, _image.Length - block);
            _image.Bytes.Slice(block, length).Fill(0xFF);
            Interlocked.Increment(ref _erases);
            if (!_image.WriteThrough(block, length)) { _status |= StatusEraseError; Interlocked.Increment(ref _writeErrors); }
        }
        Enter(Mode.ReadStatus);
    }

    /// <summary>Switches mode, mapping the window exactly while in read-array mode.</summary>
    private void Enter(Mode mode)
    {
        _mode = mode;
        bool map = mode == Mode.ReadArray;
        if (map == _mapped) return;
        if (map) _window.MapArray();
        else _window.UnmapArray();
        _mapped = map;
    }

    private bool InChip(ulong offset, int length) => length is > 0 and <= 8 && offset < (ulong)_image.Length && (ulong)length <= (ulong)_image.Length - offset;

    /// <summary>Read-identifier mode: manufacturer at offset 0, device at 1, and every block unlocked (offset 2 of a
    /// block); the pattern repeats in each block as on the Intel parts.</summary>
    private static byte Identifier(int at) => (at % BlockSize) switch
    {
        0 => ManufacturerId,
        1 => DeviceId,
        _ => 0,
    };

    /// <summary>The CFI query structure (JEDEC JESD68) for a byte-wide chip of <paramref name="length"/> bytes in
    /// uniform 4 KiB blocks, as read at byte offsets 0x10 onward in query mode.</summary>
    private static byte[] BuildQueryTable(int length)
    {
        var q = new byte[0x40];
        q[0x10] = (byte)'Q'; q[0x11] = (byte)'R'; q[0x12] = (byte)'Y';
        q[0x13] = 0x01; q[0x14] = 0x00;            // primary command set: Intel/Sharp extended
        q[0x15] = 0x31; q[0x16] = 0x00;            // its extended table at 0x31
        q[0x1B] = 0x45; q[0x1C] = 0x55;            // Vcc 4.5-5.5 V
        q[0x1F] = 0x01; q[0x21] = 0x01;            // typical timeouts: 2 us byte program, 2 ms block erase
        q[0x23] = 0x01; q[0x25] = 0x01;            // maximum timeouts: twice the typical
        q[0x27] = (byte)System.Numerics.BitOperations.Log2((uint)length);   // device size, log2 (rounded down)
        q[0x28] = 0x00; q[0x29] = 0x00;            // interface: x8 asynchronous
        q[0x2A] = 0x00; q[0x2B] = 0x00;            // no write buffer
        q[0x2C] = 0x01;                            // one erase block region:
        int blocks = length / BlockSize - 1;
        q[0x2D] = (byte)blocks; q[0x2E] = (byte)(blocks >> 8);            // number of blocks - 1
        q[0x2F] = (byte)(BlockSize / 256); q[0x30] = (byte)(BlockSize / 256 >> 8);   // block size / 256
        q[0x31] = (byte)'P'; q[0x32] = (byte)'R'; q[0x33] = (byte)'I';    // primary extended table, version 1.0
        q[0x34] = (byte)'1'; q[0x35] = (byte)'0';
        return q;
    }

    /// <summary>The guest-physical address of a variable store of <paramref name="varsBytes"/> below a ROM of
    /// <paramref name="codeBytes"/> that ends at 4 GiB: where QEMU puts pflash unit 1 under unit 0.</summary>
    public static ulong WindowAddress(ulong codeBytes, ulong varsBytes) => (4UL << 30) - codeBytes - varsBytes;
}
