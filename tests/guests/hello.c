/* hello: prints a line and resets (exit status 2). The benchmark runs the same ELF under QEMU (and
 * build/hello.pvh.elf, the same code with the PVH entry, under QEMU's microvm).
 * Command-line options for the engine tests:
 *   inport=P  read I/O port P (nobody emulates it) and report the value
 *   echo=N    read N bytes from COM1 and report them back
 *   spin=1    print "ready" and spin forever (the host stops the VM)
 *   idle=1    print "ready" and halt with interrupts off: the vCPU sleeps in the host, so many such VMs can idle
 *             side by side at no CPU cost (bench/idle.sh, bench/module.ps1)
 *   msr=1     read and write an MSR no hypervisor implements (#GP, or 0 with -w)
 *   x2apic=1  report IA32_APIC_BASE's mode bits and, in x2APIC mode, the x2APIC id MSR
 *   ticks=1   print "tick N" lines forever at a steady pace (the host pauses, resumes and stops it) */
#include "lib/guest.h"

static uint8_t serial_getc(void)
{
    while (!(inb(0x3F8 + 5) & 0x01))
        __asm__ volatile("pause");
    return inb(0x3F8);
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    print("Hello from the XhyvePS hello guest\n");
    report_hex("magic", magic);
    report("mem_upper_kib", mbi->mem_upper);

    uint32_t port = cmdline_uint(mbi, "inport", 0);
    if (port) report_hex("inport", inb((uint16_t)port));

    uint32_t echo = cmdline_uint(mbi, "echo", 0);
    if (echo) {
        char buf[64];
        uint32_t n = echo < sizeof buf - 1 ? echo : sizeof buf - 1;
        report("echo_ready", n);
        for (uint32_t i = 0; i < n; i++) buf[i] = (char)serial_getc();
        buf[n] = 0;
        report_str("echo", buf);
    }

    if (cmdline_uint(mbi, "msr", 0)) {
        uint32_t lo, hi;
        __asm__ volatile("wrmsr" : : "c"(0xC0DE0123u), "a"(0x55u), "d"(0u));
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xC0DE0123u));
        report_hex("msr_lo", lo);
        report_hex("msr_hi", hi);
    }

    if (cmdline_uint(mbi, "x2apic", 0)) {
        uint32_t lo, hi;
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0x1Bu));
        report("apic_enabled", (lo >> 11) & 1);
        report("x2apic_mode", (lo >> 10) & 1);
        if (lo & (1u << 10)) {
            __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0x802u));
            report("x2apic_id", lo);
        }
    }

    if (cmdline_uint(mbi, "ticks", 0)) {
        for (uint32_t n = 0;; n++) {
            for (volatile uint32_t i = 0; i < 20000; i++) ;
            print("tick "); print_dec(n); print("\n");
        }
    }

    if (cmdline_uint(mbi, "idle", 0)) {
        report("ready", 1);
        for (;;) __asm__ volatile("cli; hlt");
    }

    if (cmdline_uint(mbi, "spin", 0)) {
        report("ready", 1);
        for (;;) __asm__ volatile("pause");
    }
    test_done();
}
