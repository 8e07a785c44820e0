using Xhyve.Vmm.Firmware.Acpi.Aml;

namespace Xhyve.Vmm.Tests.Firmware;

/// <summary>The AML encoder against encodings from the ACPI specification and iasl's output.</summary>
public sealed class AmlTests
{
    [Theory]
    [InlineData(0, new byte[] { 0x01 })]
    [InlineData(62, new byte[] { 0x3F })]
    [InlineData(63, new byte[] { 0x41, 0x04 })]          // 65 total: lead 0x40 | (65 & 0xF), then 65 >> 4
    [InlineData(4093, new byte[] { 0x4F, 0xFF })]
    [InlineData(4094, new byte[] { 0x81, 0x00, 0x01 })]  // 4097 = 0x1001: nibble 1, then 0x100
    public void PkgLength_UsesTheSpecEncoding(int content, byte[] expected)
    {
        Assert.Equal(expected, Aml.PkgLength(content));
    }

    [Theory]
    [InlineData("PNP0A03", new byte[] { 0x0C, 0x41, 0xD0, 0x0A, 0x03 })]
    [InlineData("PNP0501", new byte[] { 0x0C, 0x41, 0xD0, 0x05, 0x01 })]
    [InlineData("PNP0B00", new byte[] { 0x0C, 0x41, 0xD0, 0x0B, 0x00 })]
    public void EisaId_CompressesLikeIasl(string id, byte[] expected)
    {
        Assert.Equal(expected, Aml.EisaId(id));
    }

    [Theory]
    [InlineData(0UL, new byte[] { 0x00 })]
    [InlineData(1UL, new byte[] { 0x01 })]
    [InlineData(0xFFUL, new byte[] { 0x0A, 0xFF })]
    [InlineData(0x1234UL, new byte[] { 0x0B, 0x34, 0x12 })]
    [InlineData(0x12345678UL, new byte[] { 0x0C, 0x78, 0x56, 0x34, 0x12 })]
    [InlineData(0x1_0000_0000UL, new byte[] { 0x0E, 0, 0, 0, 0, 1, 0, 0, 0 })]
    [InlineData(ulong.MaxValue, new byte[] { 0xFF })]
    public void Integer_UsesTheShortestEncoding(ulong value, byte[] expected)
    {
        Assert.Equal(expected, Aml.Integer(value));
    }

    [Fact]
    public void Names_PadSegmentsAndUsePrefixes()
    {
        Assert.Equal("_HID"u8.ToArray(), Aml.Name("_HID"));
        Assert.Equal("RTC_"u8.ToArray(), Aml.Name("RTC"));
        byte[] dual = [(byte)'\\', 0x2E, .. "_SB_PCI0"u8];
        byte[] multi = [0x2F, 3, .. "_SB_PCI0ISA_"u8];
        Assert.Equal(dual, Aml.Name("\\_SB.PCI0"));
        Assert.Equal(multi, Aml.Name("_SB.PCI0.ISA"));
        Assert.Throws<ArgumentException>(() => Aml.Name("TOOLONG"));
        Assert.Throws<ArgumentException>(() => Aml.Name("1ABC"));
    }

    [Fact]
    public void NameWithPackage_MatchesTheS5Encoding()
    {
        // Name (\_S5, Package () {5, 5, 0, 0}) as iasl emits it.
        byte[] expected = [0x08, 0x5C, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00];
        Assert.Equal(expected, Aml.NameObject("\\_S5", Aml.Package(Aml.Integer(5), Aml.Integer(5), Aml.Integer(0), Aml.Integer(0))));
    }

    [Fact]
    public void DeviceAndScope_WrapTheirBodyInAPackageLength()
    {
        var device = Aml.Device("COM1", Aml.NameObject("_UID", Aml.Integer(1)));
        byte[] expected = [0x5B, 0x82, 0x0B, .. "COM1"u8, 0x08, .. "_UID"u8, 0x01];
        Assert.Equal(expected, device);
        var scope = Aml.Scope("\\_SB", device);
        Assert.Equal(0x10, scope[0]);
        Assert.Equal(1 + 5 + device.Length, scope[1]);   // the PkgLength byte, "\\_SB_", the device
    }

    [Fact]
    public void ResourceTemplate_IoAndIrq_MatchTheSmallDescriptors()
    {
        // ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0x01, 0x08) IRQNoFlags () {4} }
        byte[] expected = [0x11, 0x10, 0x0A, 0x0D, 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00];
        Assert.Equal(expected, Resources.Template(Resources.Io(0x3F8, 0x3F8, 1, 8), Resources.IrqNoFlags(4)));
    }

    [Fact]
    public void AddressSpaceDescriptors_HaveTheirSpecLengths()
    {
        Assert.Equal(16, Resources.WordBusNumber(0, 255).Length);
        Assert.Equal(26, Resources.DWordMemory(0xC000_0000, 0xDFFF_FFFF).Length);
        Assert.Equal(46, Resources.QWordMemory(1UL << 32, (2UL << 32) - 1).Length);
        Assert.Equal(12, Resources.Memory32Fixed(true, 0xFED0_0000, 0x400).Length);
    }
}
