/* cmos: reads the RTC (waiting for UIP to clear, converting BCD) and the CMOS memory-size bytes. */
#include "lib/guest.h"

static uint8_t cmos(uint8_t reg) { outb(0x70, reg); return inb(0x71); }
static uint32_t bcd(uint8_t v, int binary) { return binary ? v : (uint32_t)((v >> 4) * 10 + (v & 0xF)); }

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    while (cmos(0x0A) & 0x80)
        ;
    int binary = (cmos(0x0B) & 0x04) != 0;
    report("sec", bcd(cmos(0x00), binary));
    report("min", bcd(cmos(0x02), binary));
    report("hour", bcd(cmos(0x04), binary));
    report("day", bcd(cmos(0x07), binary));
    report("month", bcd(cmos(0x08), binary));
    report("year", bcd(cmos(0x32), binary) * 100 + bcd(cmos(0x09), binary));
    report_hex("reg_b", cmos(0x0B));
    report_hex("reg_d", cmos(0x0D));
    report("base_kib", cmos(0x15) | (cmos(0x16) << 8));
    report("ext_kib", cmos(0x30) | (cmos(0x31) << 8));
    report("above16m_64k", cmos(0x34) | (cmos(0x35) << 8));
    report("above4g_64k", cmos(0x5B) | (cmos(0x5C) << 8) | ((uint32_t)cmos(0x5D) << 16));
    report("mb_mem_upper_kib", mbi->mem_upper);
    /* NVRAM is writable: write a byte and read it back. */
    outb(0x70, 0x40); outb(0x71, 0xA5);
    report_hex("nvram_40", cmos(0x40));
    test_done();
}
