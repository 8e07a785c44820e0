/* exits: N `out` instructions to port 0x80 (n=N on the command line), for the exit benchmark. */
#include "lib/guest.h"

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    uint32_t n = cmdline_uint(mbi, "n", 10000);
    serial_init();
    for (uint32_t i = 0; i < n; i++) outb(0x80, (uint8_t)i);
    report("exits", n);
    test_done();
}
