/* hpet: arms HPET comparator 0 routed to IOAPIC pin 20 and takes its interrupts through the IDT:
 * first one-shot, then periodic (three interrupts). Reports what it received. */
#include "lib/guest.h"
#include "lib/intr.h"

#define HPET 0xFED00000u
#define VECTOR 0x40
static volatile uint32_t irqs;

static void on_timer(void) { irqs++; }

static uint32_t hpet_lo(uint32_t reg) { return mmio_read32(HPET + reg); }
static void hpet_w(uint32_t reg, uint32_t lo, uint32_t hi) { mmio_write32(HPET + reg, lo); mmio_write32(HPET + reg + 4, hi); }

static int wait_irqs(uint32_t n)
{
    uint32_t start = hpet_lo(0xF0);
    while (irqs < n) {
        wait_for_interrupt();
        if (hpet_lo(0xF0) - start > 100000000u) return 0;   /* 10 s at 10 MHz */
    }
    return 1;
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    idt_init(on_timer);
    lapic_enable();
    ioapic_route(20, VECTOR, 0);
    report("period_fs", mmio_read32(HPET + 4));
    report("timers", ((hpet_lo(0) >> 8) & 0x1F) + 1);
    hpet_w(0x10, 0, 0);                                  /* halt the counter */
    hpet_w(0xF0, 0, 0);
    hpet_w(0x100, (20u << 9) | (1u << 2), 0);            /* timer 0: edge, enabled, pin 20 */
    hpet_w(0x108, 10000, 0);                             /* 1 ms */
    hpet_w(0x10, 1, 0);                                  /* run */
    report("oneshot_ok", wait_irqs(1));
    report("oneshot_irqs", irqs);
    uint32_t now = hpet_lo(0xF0);
    uint32_t periodic = (20u << 9) | (1u << 2) | (1u << 3) | (1u << 6); /* periodic, VAL_SET */
    hpet_w(0x100, periodic, 0);
    mmio_write32(HPET + 0x108, now + 20000);             /* first expiry: VAL_SET for each half */
    hpet_w(0x100, periodic, 0);
    mmio_write32(HPET + 0x10C, 0);
    hpet_w(0x108, 20000, 0);                             /* period: 2 ms */
    report("periodic_ok", wait_irqs(4));
    hpet_w(0x100, 0, 0);
    report("total_irqs", irqs);
    test_done();
}
