/* The tiny library the test guests share: port I/O, serial output on COM1, PCI configuration
 * access, and the result protocol the host tests read ("XHYVE-TEST key=value" lines on COM1). */
#ifndef GUEST_H
#define GUEST_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline uint32_t mmio_read32(uint32_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uint32_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }

/* Multiboot information (the fields the guests read). */
struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
};
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002

void serial_init(void);
void serial_putc(char c);
void print(const char *s);
void print_dec(uint32_t v);
void print_hex(uint32_t v);
void report(const char *key, uint32_t value);       /* XHYVE-TEST key=<decimal> */
void report_hex(const char *key, uint32_t value);   /* XHYVE-TEST key=0x<hex> */
void report_str(const char *key, const char *value);
void test_done(void) __attribute__((noreturn));      /* XHYVE-TEST done, then reset */
void guest_reset(void) __attribute__((noreturn));
uint32_t pci_read32(uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg);
void pci_write32(uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg, uint32_t value);
/* Offset of capability id in the function's list, or 0. */
uint32_t pci_find_cap(uint32_t slot, uint8_t id);
/* Value of "key=<decimal>" in the multiboot command line, or def when absent. */
uint32_t cmdline_uint(const struct multiboot_info *mbi, const char *key, uint32_t def);

void spin_lock(volatile uint32_t *lock);
void spin_unlock(volatile uint32_t *lock);

#endif
