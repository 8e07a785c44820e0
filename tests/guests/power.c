/* power: ACPI power control from the guest side.
 *   s5=1      write SLP_TYP=5 | SLP_EN to PM1a_CNT: the engine must exit 0
 *   button=1  enable the power-button event, wait for the host to press it (SIGTERM), then S5
 *   reset=1   write 0x06 to the FADT reset register (port 0xCF9): the engine must exit 2
 *   ignore=1  enable the power-button event, then never shut down (the host must turn it off) */
#include "lib/guest.h"

#define PM1A_STS 0x400
#define PM1A_EN 0x402
#define PM1A_CNT 0x404
#define PWRBTN (1u << 8)

static void s5(void)
{
    print("XHYVE-TEST s5=1\n");
    outw(PM1A_CNT, (uint16_t)((5u << 10) | (1u << 13)));
    for (;;) __asm__ volatile("pause");   /* the VM is off before this loops */
}

static uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    if (cmdline_uint(mbi, "reset", 0)) { print("XHYVE-TEST reset=1\n"); outb(0xCF9, 0x06); for (;;) ; }
    if (cmdline_uint(mbi, "ignore", 0)) {
        outw(PM1A_EN, PWRBTN);
        report("ready", 1);
        for (;;) __asm__ volatile("pause");
    }
    if (cmdline_uint(mbi, "button", 0)) {
        outw(PM1A_STS, PWRBTN);           /* clear a stale status */
        outw(PM1A_EN, PWRBTN);
        report("ready", 1);
        while (!(inw(PM1A_STS) & PWRBTN)) __asm__ volatile("pause");
        outw(PM1A_STS, PWRBTN);
        report_str("button", "pressed");
    }
    s5();
}
