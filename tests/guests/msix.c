/* msix: drives the test device ("-s N,testdev") through MSI-X (two vectors, per-vector and function
 * masks with the pending-bit array), MSI, and INTx through the IOAPIC pin its interrupt line names. */
#include "lib/guest.h"
#include "lib/intr.h"

static volatile uint32_t count[0x60];
static uint32_t bar0, pic_vector = 0xFFFF;
static void on_irq(void)
{
    if (irq_vector < 0x60) count[irq_vector]++;
    if (irq_vector == 0x53 || irq_vector == pic_vector) mmio_write32(bar0 + 8, 1);   /* acknowledge INTx before EOI */
    if (irq_vector == pic_vector) { outb(0xA0, 0x20); outb(0x20, 0x20); }          /* 8259 EOI (slave, master) */
}

/* The 8259 pair in the PC layout: vectors 0x30-0x3F, slave on IRQ 2; all masked but the cascade. */
static void pic_init(void)
{
    outb(0x20, 0x11); outb(0x21, 0x30); outb(0x21, 0x04); outb(0x21, 0x01);
    outb(0xA0, 0x11); outb(0xA1, 0x38); outb(0xA1, 0x02); outb(0xA1, 0x01);
    outb(0x21, 0xFB); outb(0xA1, 0xFF);
}

static int wait_count(uint32_t vector, uint32_t n) { return wait_for(&count[vector], n, 200); }

static void settle(void)
{
    static volatile uint32_t never;
    wait_for(&never, 1, 5);   /* 5 ms for anything that would (wrongly) arrive */
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    interrupts_start(on_irq);
    uint32_t slot = 32;
    for (uint32_t s = 0; s < 32; s++) if (pci_read32(0, s, 0, 0) == 0x7E571275) { slot = s; break; }
    report("found", slot < 32);
    if (slot == 32) test_done();
    bar0 = pci_read32(0, slot, 0, 0x10) & ~0xFu;
    uint32_t bar1 = pci_read32(0, slot, 0, 0x14) & ~0xFu;
    report_hex("magic", mmio_read32(bar0));
    pci_write32(0, slot, 0, 4, pci_read32(0, slot, 0, 4) | 0x6);          /* memory decode, bus master */

    uint32_t msix = pci_find_cap(slot, 0x11);
    report("msix_cap", msix != 0);
    if (msix) {
        report("msix_table_size", ((pci_read32(0, slot, 0, msix) >> 16) & 0x7FF) + 1);
        for (uint32_t v = 0; v < 2; v++) {
            mmio_write32(bar1 + 16 * v, 0xFEE00000); mmio_write32(bar1 + 16 * v + 4, 0);
            mmio_write32(bar1 + 16 * v + 8, 0x50 + v); mmio_write32(bar1 + 16 * v + 12, 0);
        }
        pci_write32(0, slot, 0, msix, pci_read32(0, slot, 0, msix) | (1u << 31));   /* MSI-X enable */
        mmio_write32(bar0 + 4, 0);
        report("msix_v0", wait_count(0x50, 1));
        mmio_write32(bar0 + 4, 1);
        report("msix_v1", wait_count(0x51, 1));
        /* Vector mask: the interrupt waits in the PBA until unmasked. */
        mmio_write32(bar1 + 12, 1);
        mmio_write32(bar0 + 4, 0);
        settle();
        report("masked_count", count[0x50]);
        report("pba_pending", mmio_read32(bar1 + 0x800) & 1);
        mmio_write32(bar1 + 12, 0);
        report("unmasked_delivered", wait_count(0x50, 2));
        report("pba_after", mmio_read32(bar1 + 0x800) & 1);
        /* Function mask. */
        pci_write32(0, slot, 0, msix, pci_read32(0, slot, 0, msix) | (1u << 30));
        mmio_write32(bar0 + 4, 1);
        settle();
        report("function_masked_count", count[0x51]);
        pci_write32(0, slot, 0, msix, pci_read32(0, slot, 0, msix) & ~(1u << 30));
        report("function_unmasked_delivered", wait_count(0x51, 2));
        pci_write32(0, slot, 0, msix, pci_read32(0, slot, 0, msix) & ~(1u << 31)); /* MSI-X off */
    }

    uint32_t msi = pci_find_cap(slot, 0x05);
    report("msi_cap", msi != 0);
    if (msi) {
        pci_write32(0, slot, 0, msi + 4, 0xFEE00000);
        pci_write32(0, slot, 0, msi + 8, 0);
        pci_write32(0, slot, 0, msi + 12, 0x52);
        pci_write32(0, slot, 0, msi, pci_read32(0, slot, 0, msi) | (1u << 16));   /* MSI enable */
        mmio_write32(bar0 + 4, 0);
        report("msi_delivered", wait_count(0x52, 1));
        pci_write32(0, slot, 0, msi, pci_read32(0, slot, 0, msi) & ~(1u << 16));
    }

    /* INTx in APIC mode: the GSI is the one _PRT gives for the slot's INTA (16 + slot mod 8). */
    uint32_t gsi = 16 + slot % 8;
    report("intx_gsi", gsi);
    ioapic_route(gsi, 0x53, 1);
    mmio_write32(bar0 + 4, 0);
    report("intx_delivered", wait_count(0x53, 1));
    report("intx_status_after_ack", (pci_read32(0, slot, 0, 4) >> 19) & 1);
    ioapic_mask(gsi);

    /* INTx in PIC mode: the Interrupt Line register names the 8259 input; level-triggered via ELCR. */
    uint32_t line = pci_read32(0, slot, 0, 0x3C) & 0xFF;
    report("intx_line", line);
    pic_init();
    outb(line < 8 ? 0x4D0 : 0x4D1, (uint8_t)(1u << (line % 8)));
    pic_vector = 0x30 + line;
    if (line < 8) outb(0x21, (uint8_t)(0xFB & ~(1u << line)));
    else outb(0xA1, (uint8_t)~(1u << (line - 8)));
    mmio_write32(bar0 + 4, 0);
    report("pic_delivered", wait_count(pic_vector, 1));
    outb(0x21, 0xFF); outb(0xA1, 0xFF);
    test_done();
}
