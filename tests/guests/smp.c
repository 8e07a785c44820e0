/* smp: the BSP starts every AP with INIT/SIPI/SIPI; each CPU reports its APIC id (CPUID and the
 * local APIC's ID register). The CPU count comes from CPUID leaf 1, so it checks the topology too. */
#include "lib/guest.h"

#define LAPIC 0xFEE00000u
#define MAX_CPUS 64

extern char ap_tramp_start[], ap_tramp_end[];
volatile uint32_t ap_next_stack;
uint8_t ap_stacks[MAX_CPUS][4096] __attribute__((aligned(16)));
static volatile uint32_t started;
static volatile uint32_t print_lock;

static void report_cpu(void)
{
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    uint32_t cpuid_id = b >> 24;
    uint32_t lapic_id = mmio_read32(LAPIC + 0x20) >> 24;
    spin_lock(&print_lock);
    print("XHYVE-TEST cpu_"); print_dec(cpuid_id); print("="); print_dec(lapic_id); print("\n");
    spin_unlock(&print_lock);
}

void ap_main(void)
{
    report_cpu();
    __sync_fetch_and_add(&started, 1);
}

static void delay(uint32_t n) { for (volatile uint32_t i = 0; i < n; i++) ; }

static void send_ipi(uint32_t low)
{
    mmio_write32(LAPIC + 0x310, 0);
    mmio_write32(LAPIC + 0x300, low);
    for (int i = 0; i < 100000 && (mmio_read32(LAPIC + 0x300) & (1u << 12)); i++)
        ;
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    uint32_t a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    uint32_t cpus = (b >> 16) & 0xFF;
    if (cpus == 0) cpus = 1;
    report("cpuid_logical", cpus);
    cpuid(0, 0, &a, &b, &c, &d);
    if (a >= 0xB) {
        cpuid(0xB, 1, &a, &b, &c, &d);
        report("leaf_b_cores", b & 0xFFFF);
    }
    report_cpu();

    if (cpus > 1) {
        uint8_t *dst = (uint8_t *)0x8000;
        for (char *p = ap_tramp_start; p < ap_tramp_end; p++) *dst++ = (uint8_t)*p;
        mmio_write32(LAPIC + 0xF0, 0x1FF);             /* software-enable the local APIC */
        send_ipi(0x000C4500);                          /* INIT, all excluding self */
        delay(2000);
        send_ipi(0x000C4608);                          /* SIPI, vector 0x08 -> 0x8000 */
        delay(2000);
        send_ipi(0x000C4608);
        for (uint32_t i = 0; i < 20000000 && started < cpus - 1; i++)
            __asm__ volatile("pause");
    }
    report("cpus_started", started + 1);
    test_done();
}
