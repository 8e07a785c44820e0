/* rtcirq: takes RTC interrupts on IRQ 8 (IOAPIC pin 8): periodic at 64 Hz, then update-ended and
 * alarm (don't-care alarm bytes: every second), reading register C in the handler as drivers do. */
#include "lib/guest.h"
#include "lib/intr.h"

static volatile uint32_t periodic, update, alarm, irqs;
static uint8_t cmos(uint8_t reg) { outb(0x70, reg); return inb(0x71); }
static void cmos_w(uint8_t reg, uint8_t v) { outb(0x70, reg); outb(0x71, v); }

static void on_irq(void)
{
    if (irq_vector != 0x48) return;
    irqs++;
    uint8_t c = cmos(0x0C);
    if (c & 0x40) periodic++;
    if (c & 0x10) update++;
    if (c & 0x20) alarm++;
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    interrupts_start(on_irq);
    ioapic_route(8, 0x48, 0);
    cmos(0x0C);
    cmos_w(0x0A, 0x2A);                                /* 64 Hz */
    cmos_w(0x0B, 0x42);                                /* PIE, 24-hour */
    report("periodic_ok", wait_for(&periodic, 4, 2000));
    cmos_w(0x0B, 0x02);
    cmos_w(0x01, 0xFF); cmos_w(0x03, 0xFF); cmos_w(0x05, 0xFF);
    cmos_w(0x0B, 0x32);                                /* AIE, UIE */
    report("update_ok", wait_for(&update, 1, 3000));
    report("alarm_seen", alarm > 0);
    cmos_w(0x0B, 0x02);
    report("irqs", irqs);
    test_done();
}
