/* hello: prints a line and resets (exit status 2). The benchmark runs the same ELF under QEMU. */
#include "lib/guest.h"

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    print("Hello from the XhyvePS hello guest\n");
    report_hex("magic", magic);
    report("mem_upper_kib", mbi->mem_upper);
    test_done();
}
