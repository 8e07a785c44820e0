/* pci: enumerates bus 0 through 0xCF8/0xCFC and reports each function found. */
#include "lib/guest.h"

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    uint32_t found = 0;
    for (uint32_t slot = 0; slot < 32; slot++) {
        for (uint32_t fn = 0; fn < 8; fn++) {
            uint32_t id = pci_read32(0, slot, fn, 0);
            if ((id & 0xFFFF) == 0xFFFF) { if (fn == 0) break; continue; }
            uint32_t class = pci_read32(0, slot, fn, 8) >> 8;
            print("XHYVE-TEST pci_");
            print_dec(slot); print("_"); print_dec(fn);
            print("=0x"); print_hex(id); print(",0x"); print_hex(class); print("\n");
            found++;
            uint32_t header = (pci_read32(0, slot, fn, 0x0C) >> 16) & 0xFF;
            if (fn == 0 && !(header & 0x80)) break;
        }
    }
    report("pci_functions", found);
    /* The address register reads back what was written. */
    outl(0xCF8, 0x80000000u | (31u << 11));
    report_hex("cf8_readback", inl(0xCF8));
    test_done();
}
