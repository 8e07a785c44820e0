/* Interrupt entry for the test guests. The software-nested KVM on our hosts cannot emulate IRET at
 * CPL0, so the stubs return without it: they drop CS and EFLAGS and jump back. That is only valid
 * because the guests take interrupts solely in wait_for_interrupt/poll_interrupts, where IF=0 on
 * return is what the next instruction sets anyway. Vectors 0x20-0x5F each get a 16-byte stub that
 * records its vector in irq_vector. */
    .section .text
    .globl irq_stubs, irq_stub, wait_for_interrupt, poll_interrupts
    .align 16
irq_stubs:
    .set vec, 0x20
    .rept 64
    .align 16
    movl $vec, irq_vector
    jmp irq_common
    .set vec, vec + 1
    .endr

irq_stub:
    movl $0xFFFFFFFF, irq_vector
irq_common:
    pushal
    call *irq_handler
    movl $0, 0xFEE000B0          /* local APIC EOI */
    popal
    popl irq_return_eip
    addl $8, %esp                /* CS, EFLAGS */
    jmp *irq_return_eip

wait_for_interrupt:
    sti
    hlt
    cli
    ret

poll_interrupts:
    sti
    nop
    nop
    cli
    ret

    .section .bss
    .align 4
    .globl irq_handler, irq_vector
irq_handler: .long 0
irq_vector: .long 0
irq_return_eip: .long 0
