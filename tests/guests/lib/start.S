/* Multiboot v1 entry for the test guests: loads our own flat GDT, sets a stack and calls
 * guest_main(magic, info). If guest_main returns, the guest resets the machine. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003   /* page-align modules, want memory info */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text
    .globl _start
_start:
    cli
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  movw $0x10, %cx
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %ss
    movw %cx, %fs
    movw %cx, %gs
    movl $boot_stack_top, %esp
    pushl %ebx              /* multiboot info */
    pushl %eax              /* bootloader magic */
    call guest_main
    call guest_reset
2:  hlt
    jmp 2b

    .section .rodata
    .align 8
    .globl guest_gdt
guest_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF   /* 0x08: 32-bit code, flat */
    .quad 0x00CF93000000FFFF   /* 0x10: data, flat */
gdt_desc:
    .word gdt_desc - guest_gdt - 1
    .long guest_gdt

    .section .bss
    .align 16
    .space 16384
boot_stack_top:
