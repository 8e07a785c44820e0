/*
 * A 512-byte MBR boot sector for the boot-ROM tests: a BIOS (SeaBIOS) loads it at 0x7C00 from whichever disk it
 * boots (virtio-blk, AHCI) and jumps to it in real mode. It counts its boots in LBA 1 of its own disk through
 * INT 13h (so the count survives a machine reset, which rebuilds everything but the disk image), prints
 * "XHYVE-TEST boot=NN drive=DD" on COM1, then resets while the count is at most the byte at LBA 1 offset 1 (through
 * the i8042, port 0xCF9 or a triple fault, as the byte at offset 2 says), else prints "XHYVE-TEST done" and powers
 * off with S5 in PM1a_CNT (port 0x404; then 0x604, where it is on QEMU's i440FX, for the cross-check).
 */
    .code16
    .text
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7C00, %sp
    ljmp $0, $1f
1:  sti
    mov %dl, drive

    mov $0x0201, %ax            /* INT 13h AH=02 read, 1 sector: C0 H0 S2 = LBA 1 */
    call disk
    incb counts                 /* this boot */
    mov $0x0301, %ax            /* AH=03 write it back */
    call disk
    cli                         /* no timer tick from here: SeaBIOS's serial console writes the last characters */
                                /* of its screen late, from its timer handler; none may land inside our lines */
    mov $msg_boot, %si
    call puts
    mov counts, %al
    call puthex
    mov $msg_drive, %si
    call puts
    mov drive, %al
    call puthex
    mov $msg_crlf, %si
    call puts

    mov counts, %al
    cmp counts + 1, %al         /* boots so far <= resets wanted: reset */
    ja poweroff
    mov $msg_reset, %si
    call puts
    mov counts + 2, %al         /* how: 0 the i8042, 1 port 0xCF9, 2 a triple fault */
    cmp $1, %al
    je 1f
    cmp $2, %al
    je 2f
    mov $0xFE, %al              /* i8042: pulse the CPU reset line */
    out %al, $0x64
    jmp halt
1:  mov $0x06, %al              /* CF9: SYS_RST | RST_CPU */
    mov $0xCF9, %dx
    out %al, %dx
    jmp halt
2:  cli                         /* protected mode without an IDT: a #GP faults, the #DF faults, the CPU shuts */
    lidt null_idt               /* down (in real mode a software-emulated CPU may not check the IVT's limit) */
    lgdt gdt_desc
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    ljmp $0x08, $3f
    .code32
3:  mov $0x18, %ax             /* a selector past the GDT's limit: #GP */
    mov %ax, %ds
    hlt
    .code16

poweroff:
    mov $msg_done, %si
    call puts
    cmpb $0, counts + 3         /* asked to stay on: halt for the host to turn the VM off */
    jne halt
    mov $0x3400, %ax            /* SLP_TYP 5 (S5) << 10 | SLP_EN */
    mov $0x404, %dx
    out %ax, %dx
    mov $0x2000, %ax            /* QEMU's PIIX4 takes SLP_TYP 0 as S5, at 0x604 where SeaBIOS moves its PM */
    mov $0x604, %dx             /* block: for the cross-check */
    out %ax, %dx
halt:
    cli
    hlt
    jmp halt

/* AX = INT 13h function and count; transfers LBA 1 to/from `counts`; on failure says so and stops. */
disk:
    mov $0x0002, %cx
    xor %dh, %dh
    mov drive, %dl
    mov $counts, %bx
    int $0x13
    jc 1f
    ret
1:  mov $msg_fail, %si
    call puts
    jmp halt

puts:
    lodsb
    test %al, %al
    jz 1f
    call putc
    jmp puts
1:  ret

/* COM1 directly: wait for THR empty (LSR bit 5), then send AL. */
putc:
    push %dx
    push %ax
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %ax
    mov $0x3F8, %dx
    out %al, %dx
    pop %dx
    ret

puthex:
    push %ax
    shr $4, %al
    call nibble
    pop %ax
    and $0x0F, %al
nibble:
    cmp $10, %al
    jb 1f
    add $('a' - '0' - 10), %al
1:  add $'0', %al
    jmp putc

null_idt:  .word 0
           .long 0
gdt_desc:  .word 15
           .long gdt
           .balign 8
gdt:       .quad 0
           .quad 0x00CF9A000000FFFF    /* 0x08: flat 32-bit code */
msg_boot:  .asciz "\r\nXHYVE-TEST boot="     /* a line of our own, whatever the firmware left unfinished */
msg_drive: .asciz " drive="
msg_crlf:  .asciz "\r\n"
msg_reset: .asciz "XHYVE-TEST resetting\r\n"
msg_done:  .asciz "XHYVE-TEST done\r\n"
msg_fail:  .asciz "\r\nXHYVE-TEST disk_error\r\n"
drive:     .byte 0

    .org 510
    .byte 0x55, 0xAA
/* LBA 1, read here by the code above: [0] boots so far, [1] resets wanted before powering off, [2] how to reset,
 * [3] nonzero: halt at the end instead of powering off. */
counts:
