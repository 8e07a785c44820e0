/* Real-mode AP start-up code for the smp guest. It is copied to 0x8000 and started by SIPI
 * vector 0x08, so every address it uses inside itself is (label - start + 0x8000). */
#define BASE 0x8000
#define REL(x) ((x) - ap_tramp_start + BASE)

    .section .text
    .globl ap_tramp_start, ap_tramp_end
    .code16
ap_tramp_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl REL(ap_gdt_desc)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $REL(ap_protected)

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    lock xaddl %eax, ap_next_stack     /* eax = this AP's index */
    incl %eax
    shll $12, %eax
    addl $ap_stacks, %eax              /* top of this AP's 4 KiB stack */
    movl %eax, %esp
    movl $ap_main, %eax
    call *%eax
1:  cli
    hlt
    jmp 1b

    .align 8
ap_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF
    .quad 0x00CF93000000FFFF
ap_gdt_desc:
    .word ap_gdt_desc - ap_gdt - 1
    .long REL(ap_gdt)
ap_tramp_end:
