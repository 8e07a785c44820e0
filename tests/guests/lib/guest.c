#include "guest.h"

#define COM1 0x3F8

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0x07);   /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS */
}

void serial_putc(char c)
{
    for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
        ;
    outb(COM1, (uint8_t)c);
}

void print(const char *s)
{
    while (*s) {
        if (*s == '\n') serial_putc('\r');
        serial_putc(*s++);
    }
}

void print_dec(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    print(&buf[i]);
}

void print_hex(uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[9];
    for (int i = 7; i >= 0; i--) { buf[i] = digits[v & 0xF]; v >>= 4; }
    buf[8] = 0;
    print(buf);
}

static void report_key(const char *key) { print("XHYVE-TEST "); print(key); print("="); }

void report(const char *key, uint32_t value) { report_key(key); print_dec(value); print("\n"); }
void report_hex(const char *key, uint32_t value) { report_key(key); print("0x"); print_hex(value); print("\n"); }
void report_str(const char *key, const char *value) { report_key(key); print(value); print("\n"); }

void guest_reset(void)
{
    outb(0x64, 0xFE);       /* i8042: pulse the reset line */
    /* A machine without an i8042 (QEMU's microvm) ignores that: a triple fault (an exception with an empty
     * IDT) resets any x86 machine, and QEMU with -no-reboot exits on it. */
    static const struct { uint16_t limit; uint32_t base; } __attribute__((packed)) no_idt = { 0, 0 };
    __asm__ volatile("cli; lidt %0; ud2" : : "m"(no_idt));
    for (;;) __asm__ volatile("cli; hlt");
}

void test_done(void)
{
    print("XHYVE-TEST done\n");
    guest_reset();
}

uint32_t pci_read32(uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg)
{
    outl(0xCF8, 0x80000000u | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xFC));
    return inl(0xCFC);
}

void pci_write32(uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg, uint32_t value)
{
    outl(0xCF8, 0x80000000u | (bus << 16) | (slot << 11) | (fn << 8) | (reg & 0xFC));
    outl(0xCFC, value);
}

uint32_t pci_find_cap(uint32_t slot, uint8_t id)
{
    if (!((pci_read32(0, slot, 0, 4) >> 16) & 0x10)) return 0;
    uint32_t at = pci_read32(0, slot, 0, 0x34) & 0xFC;
    for (int n = 0; at && n < 48; n++) {
        uint32_t head = pci_read32(0, slot, 0, at);
        if ((head & 0xFF) == id) return at;
        at = (head >> 8) & 0xFC;
    }
    return 0;
}

uint32_t cmdline_uint(const struct multiboot_info *mbi, const char *key, uint32_t def)
{
    if (!(mbi->flags & (1u << 2)) || !mbi->cmdline) return def;
    const char *s = (const char *)mbi->cmdline;
    while (*s) {
        const char *k = key, *p = s;
        while (*k && *p == *k) { k++; p++; }
        if (!*k && *p == '=') {
            uint32_t v = 0;
            for (p++; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint32_t)(*p - '0');
            return v;
        }
        while (*s && *s != ' ') s++;
        while (*s == ' ') s++;
    }
    return def;
}

void spin_lock(volatile uint32_t *lock)
{
    while (__sync_lock_test_and_set(lock, 1))
        while (*lock) __asm__ volatile("pause");
}

void spin_unlock(volatile uint32_t *lock) { __sync_lock_release(lock); }
