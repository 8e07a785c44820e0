/* pci: enumerates bus 0 through 0xCF8/0xCFC and reports each function found, its BARs (sized with the
 * write-all-ones protocol, then restored) and its capability list; checks ECAM agrees with 0xCF8, and
 * that turning memory decode off hides a memory BAR. */
#include "lib/guest.h"

#define ECAM 0xE0000000u

static void report_bars(uint32_t slot)
{
    for (uint32_t i = 0; i < 6; i++) {
        uint32_t reg = 0x10 + 4 * i, orig = pci_read32(0, slot, 0, reg);
        pci_write32(0, slot, 0, reg, 0xFFFFFFFF);
        uint32_t sized = pci_read32(0, slot, 0, reg);
        pci_write32(0, slot, 0, reg, orig);
        if (!sized) continue;
        int io = orig & 1, is64 = !io && ((orig >> 1) & 3) == 2;
        uint32_t size = ~(sized & (io ? ~3u : ~0xFu)) + 1;
        if (io) size &= 0xFFFF;
        print("XHYVE-TEST bar_"); print_dec(slot); print("_"); print_dec(i);
        print("=0x"); print_hex(orig & (io ? ~3u : ~0xFu)); print("/0x"); print_hex(size); print("\n");
        if (is64) i++;
    }
    if (!((pci_read32(0, slot, 0, 4) >> 16) & 0x10)) return;
    print("XHYVE-TEST caps_"); print_dec(slot); print("=");
    uint32_t at = pci_read32(0, slot, 0, 0x34) & 0xFC;
    for (int n = 0; at && n < 48; n++) {
        uint32_t head = pci_read32(0, slot, 0, at);
        print(n ? ",0x" : "0x"); print_hex(head & 0xFF);
        at = (head >> 8) & 0xFC;
    }
    print("\n");
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    uint32_t found = 0, ecam_ok = 1;
    for (uint32_t slot = 0; slot < 32; slot++) {
        for (uint32_t fn = 0; fn < 8; fn++) {
            uint32_t id = pci_read32(0, slot, fn, 0);
            if ((id & 0xFFFF) == 0xFFFF) { if (fn == 0) break; continue; }
            uint32_t class = pci_read32(0, slot, fn, 8) >> 8;
            print("XHYVE-TEST pci_");
            print_dec(slot); print("_"); print_dec(fn);
            print("=0x"); print_hex(id); print(",0x"); print_hex(class); print("\n");
            if (mmio_read32(ECAM + (slot << 15) + (fn << 12)) != id) ecam_ok = 0;
            found++;
            if (fn == 0) report_bars(slot);
            uint32_t header = (pci_read32(0, slot, fn, 0x0C) >> 16) & 0xFF;
            if (fn == 0 && !(header & 0x80)) break;
        }
    }
    /* Buses 1-7: devices placed with -s bus:slot:func (each bus is its own host bridge). */
    for (uint32_t bus = 1; bus < 8; bus++) {
        for (uint32_t slot = 0; slot < 32; slot++) {
            uint32_t id = pci_read32(bus, slot, 0, 0);
            if ((id & 0xFFFF) == 0xFFFF) continue;
            print("XHYVE-TEST pcibus"); print_dec(bus); print("_"); print_dec(slot);
            print("=0x"); print_hex(id); print("\n");
            if (mmio_read32(ECAM + (bus << 20) + (slot << 15)) != id) ecam_ok = 0;
            found++;
        }
    }
    report("pci_functions", found);
    report("ecam_matches", ecam_ok);
    /* The address register reads back what was written. */
    outl(0xCF8, 0x80000000u | (31u << 11));
    report_hex("cf8_readback", inl(0xCF8));
    /* A PCI UART, if there is one: write a line through its I/O BAR. */
    for (uint32_t slot = 0; slot < 32; slot++) {
        if (pci_read32(0, slot, 0, 0) != 0x2000131F) continue;
        uint16_t port = (uint16_t)(pci_read32(0, slot, 0, 0x10) & ~3u);
        for (const char *p = "PCI-UART-OK\n"; *p; p++) {
            while (!(inb(port + 5) & 0x20)) ;
            outb(port, (uint8_t)*p);
        }
        report_hex("uart_port", port);
    }
    /* Decode control on the test device, if there is one. */
    for (uint32_t slot = 0; slot < 32; slot++) {
        if (pci_read32(0, slot, 0, 0) != 0x7E571275) continue;
        uint32_t bar0 = pci_read32(0, slot, 0, 0x10) & ~0xFu, cmd = pci_read32(0, slot, 0, 4);
        pci_write32(0, slot, 0, 4, cmd & ~2u);
        report_hex("decode_off", mmio_read32(bar0));
        pci_write32(0, slot, 0, 4, cmd | 2u);
        report_hex("decode_on", mmio_read32(bar0));
        /* Move the BAR: the device must answer at the new address only. */
        pci_write32(0, slot, 0, 0x10, bar0 + 0x100000);
        report_hex("moved_new", mmio_read32(bar0 + 0x100000));
        report_hex("moved_old", mmio_read32(bar0));
        pci_write32(0, slot, 0, 0x10, bar0);
    }
    test_done();
}
