/* Interrupt support for the test guests: an IDT, the IOAPIC and the local APIC. Interrupts are taken
 * only inside wait_for_interrupt() (see irq_stub.S for why). */
#ifndef INTR_H
#define INTR_H
#include <stdint.h>

void idt_init(void (*handler)(void));   /* every vector >= 32 calls handler, then EOI */
extern volatile uint32_t irq_vector;    /* the vector being handled (0x20-0x5F), for the handler */
void wait_for_interrupt(void);          /* sti; hlt; cli */
void poll_interrupts(void);             /* sti; nop; cli: take what is pending, never block */
void lapic_enable(void);
/* Route IOAPIC pin to vector on CPU 0; level selects level/active-low (PCI style) vs edge/active-high. */
void ioapic_route(uint32_t pin, uint8_t vector, int level);
void ioapic_mask(uint32_t pin);

#endif
