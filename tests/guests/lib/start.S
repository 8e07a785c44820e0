/* Multiboot v1 entry for the test guests: loads our own flat GDT, sets a stack and calls
 * guest_main(magic, info). If guest_main returns, the guest resets the machine.
 * Built with -DPVH it is instead the PVH entry (Xen's direct-boot ABI, which QEMU's `-kernel` uses for an
 * ELF with a XEN_ELFNOTE_PHYS32_ENTRY note and no multiboot header): the same 32-bit flat state, with
 * %ebx pointing at an hvm_start_info. QEMU tries multiboot first, so a PVH build carries no multiboot
 * header; its entry turns the start info into the multiboot fields the guests read (the command line). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003   /* page-align modules, want memory info */
#define PVH_MAGIC 0x336EC578  /* hvm_start_info.magic, passed on to guest_main as its "magic" */

#ifndef PVH
    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
#else
    .section .note.Xen, "a", @note
    .align 4
    .long 4                   /* namesz: "Xen\0" */
    .long 4                   /* descsz: a 32-bit entry address */
    .long 18                  /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long _start_pvh

    .section .text
_start_pvh:
    cli
    /* hvm_start_info: magic at 0, cmdline_paddr (64-bit) at 24. No memory size is passed on:
       flags bit 0 stays clear. */
    cmpl $PVH_MAGIC, (%ebx)
    jne 1f
    movl 24(%ebx), %eax
    testl %eax, %eax
    jz 1f
    movl %eax, pvh_mbi + 16   /* multiboot_info.cmdline */
    movl $4, pvh_mbi          /* multiboot_info.flags: cmdline present */
1:  movl $PVH_MAGIC, %eax
    movl $pvh_mbi, %ebx
    jmp _start

    .section .bss
    .align 4
pvh_mbi:
    .space 64
#endif

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
