/* chipset: finds the ACPI PM timer and the ECAM the way OVMF's PlatformPei and AcpiTimerLib do on the chipset the
 * host bridge names (-s 0,hostbridge,model=i440fx|q35): the host bridge's device id at 0:0.0 selects the PIIX4 PM
 * function (0:1.3, PMBA 0x40, PMREGMISC 0x80 bit 0) or the ICH9 LPC bridge (0:31.0, PMBASE 0x40, ACPI_CNTL 0x44
 * bit 7); when the enable bit is clear the firmware writes its own base (0xB000 / 0x600) and sets it. Then the PM
 * timer at PMBA+8 must count, SCI_EN at PMBA+4 must stick, and on Q35 PCIEXBAR must lead to a working ECAM. */
#include "lib/guest.h"

static uint32_t pmba_addr_slot, pmba_addr_fn, en_reg;
static uint8_t en_bit;

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    uint32_t did = pci_read32(0, 0, 0, 0) >> 16;
    report_hex("hostbridge_did", did);
    uint32_t ovmf_base;
    if (did == 0x1237) { pmba_addr_slot = 1; pmba_addr_fn = 3; en_reg = 0x80; en_bit = 0x01; ovmf_base = 0xB000; }
    else if (did == 0x29C0) { pmba_addr_slot = 31; pmba_addr_fn = 0; en_reg = 0x44; en_bit = 0x80; ovmf_base = 0x600; }
    else { report_str("chipset", "unknown"); test_done(); }

    uint32_t en_dword = pci_read32(0, pmba_addr_slot, pmba_addr_fn, en_reg & ~3u);
    uint8_t en = (uint8_t)(en_dword >> (8 * (en_reg & 3)));
    report("pm_enabled_at_reset", (en & en_bit) ? 1 : 0);
    if (!(en & en_bit)) {
        /* What the firmware does with the block off: its own base, then the enable bit. */
        uint32_t pmba = pci_read32(0, pmba_addr_slot, pmba_addr_fn, 0x40);
        pci_write32(0, pmba_addr_slot, pmba_addr_fn, 0x40, (pmba & ~0xFFC0u) | ovmf_base);
        pci_write32(0, pmba_addr_slot, pmba_addr_fn, en_reg & ~3u, en_dword | ((uint32_t)en_bit << (8 * (en_reg & 3))));
    }
    /* A firmware that rewrites the base anyway must not move the block the ACPI tables describe. */
    uint32_t pmba = pci_read32(0, pmba_addr_slot, pmba_addr_fn, 0x40);
    pci_write32(0, pmba_addr_slot, pmba_addr_fn, 0x40, (pmba & ~0xFFC0u) | ovmf_base);
    uint16_t base = (uint16_t)(pci_read32(0, pmba_addr_slot, pmba_addr_fn, 0x40) & ~1u);
    report_hex("pm_base", base);

    uint32_t t0 = inl(base + 8) & 0xFFFFFF, t1 = t0;
    for (int i = 0; i < 1000000 && t1 == t0; i++) t1 = inl(base + 8) & 0xFFFFFF;
    report("pm_timer_counts", t1 != t0);

    outw(base + 4, (uint16_t)(inl(base + 4) | 1));   /* BdsPlatform's IoOr16 (PMBA + 4, SCI_EN) */
    report("sci_en", inl(base + 4) & 1);

    if (did == 0x29C0) {
        uint32_t lo = pci_read32(0, 0, 0, 0x60), hi = pci_read32(0, 0, 0, 0x64);
        report_hex("pciexbar_lo", lo);
        report_hex("pciexbar_hi", hi);
        uint32_t ecam = lo & 0xF0000000u;
        report_hex("ecam_0_0_0", (lo & 1) ? mmio_read32(ecam) : 0);
        report_hex("ecam_0_31_0", (lo & 1) ? mmio_read32(ecam + (31u << 15)) : 0);
        /* BdsPlatform routes PIRQ A-D through 0:31.0 0x60: the registers keep what it writes. */
        pci_write32(0, 31, 0, 0x60, 0x0B0B0A0A);
        report_hex("pirq_a_d", pci_read32(0, 31, 0, 0x60));
    }
    test_done();
}
