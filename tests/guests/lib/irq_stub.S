/* Interrupt entry for the test guests. The software-nested KVM on our hosts cannot emulate IRET at
 * CPL0, so the stub returns without it: it drops CS and EFLAGS and jumps back. That is only valid
 * because the guests take interrupts solely in a "sti; hlt; cli" wait (wait_for_interrupt), where
 * IF=0 on return is what the next instruction sets anyway. */
    .section .text
    .globl irq_stub, wait_for_interrupt
irq_stub:
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

    .section .bss
    .align 4
    .globl irq_handler
irq_handler: .long 0
irq_return_eip: .long 0
