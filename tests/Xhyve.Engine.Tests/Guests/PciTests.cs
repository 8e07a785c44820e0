using System.Text.RegularExpressions;
using Xhyve.Engine.Tests.Support;

namespace Xhyve.Engine.Tests.Guests;

/// <summary>End-to-end PCI: enumeration against the engine's own report, ECAM, decode control, the
/// PCI UART, and MSI-X / MSI / INTx delivery from the test device.</summary>
public sealed class PciTests
{
    private static readonly string[] Slots = ["-s", "0,hostbridge", "-s", "3,uart,null", "-s", "4,testdev", "-s", "31,lpc"];

    [SkippableFact]
    public void GuestEnumeration_FindsTheBarsAndCapabilitiesTheEngineReports()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.Run(["--verbose", "-A", .. Slots, "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("pci")}"]);
        Assert.True(run.Done, run.ToString());
        var engine = Regex.Matches(run.Stderr, @"^xhyve: pci 0:(\d+):0 (.*)$", RegexOptions.Multiline)
            .ToDictionary(m => int.Parse(m.Groups[1].Value), m => m.Groups[2].Value);
        Assert.Equal([0, 3, 4, 31], engine.Keys.Order());
        int bars = 0;
        foreach (var (key, value) in run.Results.Where(r => r.Key.StartsWith("bar_")))
        {
            var parts = key.Split('_');
            var m = Regex.Match(value, "^0x([0-9a-f]+)/0x([0-9a-f]+)$");
            string expected = $"bar{parts[2]}=0x{Convert.ToUInt64(m.Groups[1].Value, 16):x}/0x{Convert.ToUInt64(m.Groups[2].Value, 16):x}";
            Assert.Contains(expected, engine[int.Parse(parts[1])]);
            bars++;
        }
        Assert.Equal(3, bars);
        Assert.Contains("caps=0x05,0x11", engine[4]);
        Assert.Equal("0x00000005,0x00000011", run.Results["caps_4"]);
        Assert.Equal("1", run.Results["ecam_matches"]);
        Assert.Equal("0xffffffff", run.Results["decode_off"]);
        Assert.Equal("0x54535458", run.Results["decode_on"]);
        Assert.Equal("0x54535458", run.Results["moved_new"]);
        Assert.Equal("0xffffffff", run.Results["moved_old"]);
        Assert.Contains("intx=gsi19,irq10", engine[3]);   // slot 3, INTA: GSI 16 + 3, and its 8259 input
        Assert.Contains("intx=gsi20,irq11", engine[4]);
    }

    [SkippableFact]
    public void DevicesOnOtherBuses_AnswerThere_AndTheEngineGivesEachBusItsOwnWindows()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.Run(["--verbose", "-A", "-s", "0,hostbridge", "-s", "1:5:0,testdev", "-s", "2:3:0,uart,null", "-s", "31,lpc",
            "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("pci")}"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0x7e571275", run.Results["pcibus1_5"]);
        Assert.Equal("0x2000131f", run.Results["pcibus2_3"]);
        Assert.Equal("4", run.Results["pci_functions"]);
        Assert.Equal("1", run.Results["ecam_matches"]);
        Assert.Contains("xhyve: pci 1:5:0 testdev", run.Stderr);
        Assert.Contains("xhyve: pci 2:3:0 uart", run.Stderr);
    }

    [SkippableFact]
    public void PciUart_CarriesGuestOutputToItsBackend()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        string log = Path.GetTempFileName();
        try
        {
            var run = EngineProcess.Run(["-s", $"3,uart,log={log}", "-s", "31,lpc", "-l", "com1,stdio", "-f", $"multiboot,{EngineProcess.Guest("pci")}"]);
            Assert.True(run.Done, run.ToString());
            Assert.Equal("PCI-UART-OK\n", File.ReadAllText(log));
        }
        finally { File.Delete(log); }
    }

    [SkippableFact]
    public void TestDevice_DeliversMsixMsiAndIntx_AndHonoursMasks()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("msix", extra: ["-A", "-s", "4,testdev"]);
        Assert.True(run.Done, run.ToString());
        var r = run.Results;
        Assert.Equal("0x54535458", r["magic"]);
        Assert.Equal("4", r["msix_table_size"]);
        Assert.Equal("1", r["msix_v0"]);
        Assert.Equal("1", r["msix_v1"]);
        Assert.Equal("1", r["masked_count"]);              // still one: the masked trigger waited
        Assert.Equal("1", r["pba_pending"]);
        Assert.Equal("1", r["unmasked_delivered"]);
        Assert.Equal("0", r["pba_after"]);
        Assert.Equal("1", r["function_masked_count"]);
        Assert.Equal("1", r["function_unmasked_delivered"]);
        Assert.Equal("1", r["msi_delivered"]);
        Assert.Equal("20", r["intx_gsi"]);
        Assert.Equal("1", r["intx_delivered"]);              // through the IOAPIC
        Assert.Equal("0", r["intx_status_after_ack"]);
        Assert.Equal("11", r["intx_line"]);
        Assert.Equal("1", r["pic_delivered"]);               // and through the 8259
    }

    [SkippableTheory]
    [InlineData(2, 7)]
    [InlineData(9, 6)]
    public void Intx_ReachesThe8259InputTheInterruptLineNames(int slot, int irq)
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("msix", extra: ["-A", "-s", $"{slot},testdev"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal((16 + slot % 8).ToString(), run.Results["intx_gsi"]);
        Assert.Equal("1", run.Results["intx_delivered"]);
        Assert.Equal(irq.ToString(), run.Results["intx_line"]);
        Assert.Equal("1", run.Results["pic_delivered"]);
    }

    [SkippableFact]
    public void SingleVectorMsiFlag_LeavesOutMsix_AndMsiStillWorks()
    {
        Skip.IfNot(EngineProcess.HasKvm, EngineProcess.KvmSkipReason);
        var run = EngineProcess.RunGuest("msix", extra: ["-A", "-W", "-s", "4,testdev"]);
        Assert.True(run.Done, run.ToString());
        Assert.Equal("0", run.Results["msix_cap"]);
        Assert.Equal("1", run.Results["msi_delivered"]);
        Assert.Equal("1", run.Results["intx_delivered"]);
    }
}
