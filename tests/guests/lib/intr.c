#include "guest.h"
#include "intr.h"

#define LAPIC 0xFEE00000u
#define IOAPIC 0xFEC00000u

struct idt_entry { uint16_t offset_lo, selector; uint8_t zero, type; uint16_t offset_hi; } __attribute__((packed));
static struct idt_entry idt[256] __attribute__((aligned(8)));
static struct { uint16_t limit; uint32_t base; } __attribute__((packed)) idtr;
extern void irq_stub(void);
extern char irq_stubs[];
extern void (*irq_handler)(void);
static void (*user_handler)(void);
static volatile uint32_t watchdog_ticks;

static void dispatch(void)
{
    if (irq_vector == 0x41) watchdog_ticks++;
    else if (user_handler) user_handler();
}

void idt_init(void (*handler)(void))
{
    uint32_t a = (uint32_t)irq_stub;
    user_handler = handler;
    irq_handler = dispatch;
    for (int i = 32; i < 256; i++) {  /* present, ring 0, 32-bit interrupt gate */
        uint32_t e = i < 0x60 ? (uint32_t)irq_stubs + 16 * (uint32_t)(i - 0x20) : a;
        idt[i] = (struct idt_entry){ (uint16_t)e, 0x08, 0, 0x8E, (uint16_t)(e >> 16) };
    }
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

/* Masks both 8259s first: ISA GSIs also reach the PIC, and the BSP's LINT0 is wired as ExtINT (virtual
 * wire, as a BIOS leaves it), so an unprogrammed PIC would deliver IRQs at exception vectors. */
void lapic_enable(void)
{
    outb(0x21, 0xFF);
    outb(0xA1, 0xFF);
    mmio_write32(LAPIC + 0xF0, 0x1FF);
}

static void ioapic_write(uint32_t reg, uint32_t value) { mmio_write32(IOAPIC, reg); mmio_write32(IOAPIC + 0x10, value); }

void ioapic_route(uint32_t pin, uint8_t vector, int level)
{
    ioapic_write(0x11 + 2 * pin, 0);                                         /* destination: APIC id 0 */
    ioapic_write(0x10 + 2 * pin, vector | (level ? (1u << 15) | (1u << 13) : 0));
}

void ioapic_mask(uint32_t pin) { ioapic_write(0x10 + 2 * pin, 1u << 16); }

#define HPET 0xFED00000u
#define T2 0x140

void watchdog_start(void)
{
    ioapic_route(21, 0x41, 0);
    uint32_t cfg = (21u << 9) | (1u << 2) | (1u << 3) | (1u << 6);   /* pin 21, enabled, periodic, VAL_SET */
    uint32_t now = mmio_read32(HPET + 0xF0);
    mmio_write32(HPET + T2, cfg); mmio_write32(HPET + T2 + 8, now + 10000);   /* first expiry, low half */
    mmio_write32(HPET + T2, cfg); mmio_write32(HPET + T2 + 12, 0);            /* VAL_SET again for the high half */
    mmio_write32(HPET + T2 + 8, 10000); mmio_write32(HPET + T2 + 12, 0);      /* period: 1 ms */
    mmio_write32(HPET + 0x10, 1);
}

int wait_for(volatile uint32_t *counter, uint32_t target, uint32_t timeout_ms)
{
    uint32_t start = watchdog_ticks;
    while (*counter < target && watchdog_ticks - start < timeout_ms) wait_for_interrupt();
    return *counter >= target;
}

void interrupts_start(void (*handler)(void))
{
    idt_init(handler);
    lapic_enable();
    watchdog_start();
}
