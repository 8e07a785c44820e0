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

/* A 1 ms HPET tick on vector 0x41 (IOAPIC pin 21) that wakes every hlt, so waits end even when the
 * interrupt under test never comes. Uses HPET timer 2. */
void watchdog_start(void);
/* The usual start: IDT with handler, PICs masked and local APIC on, watchdog running. */
void interrupts_start(void (*handler)(void));
/* Waits (hlt) until *counter >= target or timeout_ms passes; returns whether the target was reached. */
int wait_for(volatile uint32_t *counter, uint32_t target, uint32_t timeout_ms);

#endif
