/* fwcfg: reads QEMU's firmware configuration device (docs/specs/fw_cfg.rst) through both interfaces, the
 * I/O ports (selector 0x510, data 0x511) and DMA (descriptor address at 0x514/0x518), and reports what it
 * read: the signature, the feature bits, the DMA signature, the file directory (count, names, order,
 * selectors) and etc/e820 (size, FNV-1a hash, whether I/O and DMA agree), plus the DMA corner cases: skip,
 * a refused write, an unknown selector and a destination outside RAM. The same ELF runs under QEMU. */
#include "lib/guest.h"

#define FW_SEL 0x510
#define FW_DATA 0x511
#define FW_DMA_HI 0x514
#define FW_DMA_LO 0x518
#define DMA_ERROR 0x01u
#define DMA_READ 0x02u
#define DMA_SKIP 0x04u
#define DMA_SELECT 0x08u
#define DMA_WRITE 0x10u
#define MAX_FILES 64

struct dma_access { uint32_t control, length, address_hi, address_lo; } __attribute__((aligned(16)));
struct file { uint32_t size; uint16_t select; uint16_t reserved; char name[56]; };

static volatile struct dma_access dma;
static uint8_t dir_io[4 + MAX_FILES * 64], dir_dma[4 + MAX_FILES * 64];
static uint8_t buf_io[4096], buf_dma[4096];

static uint32_t be32(uint32_t v) { return (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24); }
static uint16_t be16(uint16_t v) { return (uint16_t)((v >> 8) | (v << 8)); }

static void io_read(uint16_t selector, uint8_t *buf, uint32_t n)
{
    outw(FW_SEL, selector);
    for (uint32_t i = 0; i < n; i++) buf[i] = inb(FW_DATA);
}

/* One DMA transfer; returns the control word the device wrote back (0 or DMA_ERROR). */
static uint32_t dma_op(uint32_t control, void *buf, uint32_t n)
{
    dma.control = be32(control);
    dma.length = be32(n);
    dma.address_hi = 0;
    dma.address_lo = be32((uint32_t)buf);
    __asm__ volatile("" ::: "memory");
    outl(FW_DMA_HI, 0);
    outl(FW_DMA_LO, be32((uint32_t)&dma));
    __asm__ volatile("" ::: "memory");
    return be32(dma.control);
}

static uint32_t dma_read(uint16_t selector, void *buf, uint32_t n)
{
    return dma_op(((uint32_t)selector << 16) | DMA_SELECT | DMA_READ, buf, n);
}

static int same(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static int name_cmp(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return (int)(uint8_t)*a - (int)(uint8_t)*b;
}

static uint32_t fnv1a(const uint8_t *p, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void report_indexed(const char *prefix, uint32_t i, const char *value)
{
    char key[24];
    uint32_t k = 0;
    while (prefix[k]) { key[k] = prefix[k]; k++; }
    if (i >= 10) key[k++] = (char)('0' + i / 10);
    key[k++] = (char)('0' + i % 10);
    key[k] = 0;
    report_str(key, value);
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    char s[9];

    io_read(0x0000, (uint8_t *)s, 4); s[4] = 0;
    report_str("sig_io", s);
    uint32_t id_io;
    io_read(0x0001, (uint8_t *)&id_io, 4);
    report_hex("id_io", id_io);
    if (!(id_io & 2)) { report_str("dma", "absent"); test_done(); }

    uint32_t hi = inl(FW_DMA_HI), lo = inl(FW_DMA_LO);
    for (int i = 0; i < 4; i++) { s[i] = (char)(hi >> (8 * i)); s[4 + i] = (char)(lo >> (8 * i)); }
    s[8] = 0;
    report_str("dma_sig", s);

    for (int i = 0; i < 8; i++) s[i] = 0;
    report_hex("sig_dma_status", dma_read(0x0000, s, 4));
    report_str("sig_dma", s);
    uint32_t id_dma = 0;
    dma_read(0x0001, &id_dma, 4);
    report_hex("id_dma", id_dma);

    /* The directory, through both interfaces. */
    uint32_t count_be;
    io_read(0x0019, (uint8_t *)&count_be, 4);
    uint32_t count = be32(count_be);
    report("dir_count", count);
    if (count > MAX_FILES) count = MAX_FILES;
    io_read(0x0019, dir_io, 4 + count * 64);
    report_hex("dir_dma_status", dma_read(0x0019, dir_dma, 4 + count * 64));
    report("dir_io_dma_same", same(dir_io, dir_dma, 4 + count * 64));
    const struct file *files = (const struct file *)(dir_io + 4);
    uint32_t sorted = 1, selectors_ok = 1, reserved_zero = 1, names_ok = 1;
    int e820 = -1;
    for (uint32_t i = 0; i < count; i++) {
        const struct file *f = &files[i];
        if (be16(f->select) < 0x20) selectors_ok = 0;
        if (i > 0 && be16(f->select) <= be16(files[i - 1].select)) selectors_ok = 0;
        if (f->reserved) reserved_zero = 0;
        if (f->name[55] != 0 || f->name[0] == 0) names_ok = 0;
        if (i > 0 && name_cmp(files[i - 1].name, f->name) >= 0) sorted = 0;
        if (name_cmp(f->name, "etc/e820") == 0) e820 = (int)i;
        report_indexed("file_", i, f->name);
    }
    report("dir_sorted", sorted);
    report("dir_selectors_ascending", selectors_ok);
    report("dir_reserved_zero", reserved_zero);
    report("dir_names_terminated", names_ok);

    /* etc/e820 read both ways. */
    if (e820 >= 0) {
        uint16_t sel = be16(files[e820].select);
        uint32_t size = be32(files[e820].size);
        report("e820_size", size);
        if (size > sizeof buf_io) size = sizeof buf_io;
        io_read(sel, buf_io, size);
        report_hex("e820_dma_status", dma_read(sel, buf_dma, size));
        report("e820_io_dma_same", same(buf_io, buf_dma, size));
        report_hex("e820_hash", fnv1a(buf_io, size));
        uint32_t ram_entries = 0;
        for (uint32_t at = 0; at + 20 <= size; at += 20)
            if (*(uint32_t *)(buf_io + at + 16) == 1) ram_entries++;
        report("e820_has_ram", ram_entries > 0);

        /* Skip the first entry by DMA, then the data port continues with the second. */
        if (size >= 40) {
            uint8_t second[20];
            report_hex("skip_status", dma_op(((uint32_t)sel << 16) | DMA_SELECT | DMA_SKIP, 0, 20));
            for (int i = 0; i < 20; i++) second[i] = inb(FW_DATA);
            report("skip_then_io_ok", same(second, buf_io + 20, 20));
        }

        /* A destination far outside 256 MiB of RAM: ERROR, and the device goes on working. */
        dma.control = be32(((uint32_t)sel << 16) | DMA_SELECT | DMA_READ);
        dma.length = be32(16);
        dma.address_hi = be32(0x10u);   /* 64 GiB */
        dma.address_lo = 0;
        __asm__ volatile("" ::: "memory");
        outl(FW_DMA_HI, 0);
        outl(FW_DMA_LO, be32((uint32_t)&dma));
        __asm__ volatile("" ::: "memory");
        report_hex("outside_ram_status", be32(dma.control) & DMA_ERROR);
    }

    /* Writes to a read-only item are refused; an unknown selector reads zeros. */
    uint32_t junk = 0x12345678;
    report_hex("write_status", dma_op((0x0000u << 16) | DMA_SELECT | DMA_WRITE, &junk, 4) & DMA_ERROR);
    io_read(0x0000, (uint8_t *)s, 4); s[4] = 0;
    report_str("sig_after_write", s);
    uint32_t unknown = 0xFFFFFFFF;
    io_read(0x3FFF, (uint8_t *)&unknown, 4);
    report_hex("unknown_io", unknown);
    unknown = 0xFFFFFFFF;
    report_hex("unknown_dma_status", dma_read(0x3FFF, &unknown, 4));
    report_hex("unknown_dma", unknown);
    test_done();
}
