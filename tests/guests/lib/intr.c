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

void idt_init(void (*handler)(void))
{
    uint32_t a = (uint32_t)irq_stub;
    irq_handler = handler;
    for (int i = 32; i < 256; i++) {  /* present, ring 0, 32-bit interrupt gate */
        uint32_t e = i < 0x60 ? (uint32_t)irq_stubs + 16 * (uint32_t)(i - 0x20) : a;
        idt[i] = (struct idt_entry){ (uint16_t)e, 0x08, 0, 0x8E, (uint16_t)(e >> 16) };
    }
    idtr.limit = sizeof idt - 1;
    idtr.base = (uint32_t)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

void lapic_enable(void) { mmio_write32(LAPIC + 0xF0, 0x1FF); }

static void ioapic_write(uint32_t reg, uint32_t value) { mmio_write32(IOAPIC, reg); mmio_write32(IOAPIC + 0x10, value); }

void ioapic_route(uint32_t pin, uint8_t vector, int level)
{
    ioapic_write(0x11 + 2 * pin, 0);                                         /* destination: APIC id 0 */
    ioapic_write(0x10 + 2 * pin, vector | (level ? (1u << 15) | (1u << 13) : 0));
}

void ioapic_mask(uint32_t pin) { ioapic_write(0x10 + 2 * pin, 1u << 16); }
