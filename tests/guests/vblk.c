/* vblk: a virtio-blk driver guest. Writes a pattern to sectors at the start, across a boundary the host
 * names (cross=LBA, e.g. a split-segment boundary) and at the end of the disk; flushes; reads back; and
 * checks get-id, out-of-range and unknown requests, write-zeroes, many requests in flight and hostile
 * chains. Options: legacy=1 (I/O BAR interface), msix=1 / intx=1 (interrupts instead of polling),
 * indirect=1, eventidx=1. bench=1 (sequential reads of reqkb KiB), bench=2 (random 4 KiB reads) or bench=3
 * (sequential writes of reqkb KiB, every sector non-zero), n requests at queue depth qd, for the benchmark. */
#include "lib/guest.h"
#include "lib/intr.h"
#include "lib/virtio.h"

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_WRITE_ZEROES 13

struct req_hdr { uint32_t type, reserved; uint64_t sector; };

static struct vdev dev;
static volatile uint32_t irqs, retargeted_irqs;
static int use_irq;
static struct req_hdr hdrs[64];
static volatile uint8_t statuses[64];
static uint8_t buf[8 * 512] __attribute__((aligned(4096)));
static uint8_t chk[8 * 512] __attribute__((aligned(4096)));
static struct vring_desc indirect_table[4] __attribute__((aligned(16)));
static uint32_t intx_gsi;

static void on_irq(void)
{
    if (irq_vector == 0x50) irqs++;                                /* MSI-X: the queue's vector */
    if (irq_vector == 0x51) retargeted_irqs++;                     /* ... after the driver re-pointed it */
    if (irq_vector == 0x52 && (vdev_isr(&dev) & 1)) irqs++;       /* INTx: reading the ISR deasserts the line */
}

static uint8_t pattern(uint32_t lba, uint32_t i) { return (uint8_t)(lba * 31 + i * 7 + 1); }

static int wait_used(uint32_t *head, uint32_t *len)
{
    for (uint32_t tries = 0; tries < 2000000; tries++) {
        if (vq_poll(&dev, head, len)) return 1;
        if (use_irq) wait_for_interrupt(); else __asm__ volatile("pause");
    }
    return 0;
}

/* Descriptor slots: request r uses descriptors 4r..4r+3. */
static void set_desc(uint16_t i, const void *addr, uint32_t len, uint16_t flags, uint16_t next)
{
    dev.desc[i].addr = (uint32_t)addr; dev.desc[i].len = len; dev.desc[i].flags = flags; dev.desc[i].next = next;
}

/* Builds request r: header, data (split in `pieces` descriptors), status. Returns the head. */
static uint16_t build(uint32_t r, uint32_t type, uint32_t sector, void *data, uint32_t len, uint32_t pieces)
{
    uint16_t d = (uint16_t)(4 * r);
    hdrs[r].type = type; hdrs[r].reserved = 0; hdrs[r].sector = sector;
    statuses[r] = 0xEE;
    uint16_t dataflag = type == T_OUT || type == T_WRITE_ZEROES ? 0 : VRING_DESC_F_WRITE;
    set_desc(d, &hdrs[r], sizeof hdrs[r], VRING_DESC_F_NEXT, d + 1);
    uint16_t at = d + 1;
    if (len) {
        uint32_t piece = len / pieces;
        for (uint32_t p = 0; p < pieces; p++, at++)
            set_desc(at, (uint8_t *)data + p * piece, p == pieces - 1 ? len - p * piece : piece, dataflag | VRING_DESC_F_NEXT, at + 1);
    }
    set_desc(at, (const void *)&statuses[r], 1, VRING_DESC_F_WRITE, 0);
    return d;
}

static uint8_t run(uint32_t type, uint32_t sector, void *data, uint32_t len, uint32_t pieces)
{
    uint32_t head, used;
    vq_submit(&dev, build(0, type, sector, data, len, pieces));
    if (!wait_used(&head, &used)) return 0xFD;
    return statuses[0];
}

static void fill(uint8_t *b, uint32_t lba, uint32_t count)
{
    for (uint32_t s = 0; s < count; s++) for (uint32_t i = 0; i < 512; i++) b[s * 512 + i] = pattern(lba + s, i);
}

/* Reads count sectors at lba and compares them with the pattern; how many matched. */
static uint32_t verify(uint32_t lba, uint32_t count)
{
    for (uint32_t i = 0; i < count * 512; i++) chk[i] = 0;
    if (run(T_IN, lba, chk, count * 512, 1) != 0) return 0;
    uint32_t ok = 0;
    for (uint32_t s = 0; s < count; s++) {
        uint32_t good = 1;
        for (uint32_t i = 0; i < 512; i++) if (chk[s * 512 + i] != pattern(lba + s, i)) good = 0;
        ok += good;
    }
    return ok;
}

static void bench(uint32_t mode, uint32_t n, uint32_t qd, uint32_t reqkb, uint32_t capacity)
{
    uint32_t bytes = mode == 2 ? 4096 : reqkb * 1024, sectors = bytes / 512, type = mode == 3 ? T_OUT : T_IN;
    if (qd > 32) qd = 32;
    if (qd > dev.qsize / 3) qd = dev.qsize / 3;
    uint32_t blocks = capacity / sectors, next = 0, seed = 12345, submitted = 0, done = 0, head, len;
    uint8_t *base = (uint8_t *)0x01000000;               /* 16 MiB: data buffers, one per slot */
    uint16_t heads[32];
    /* Writes carry data in every sector (a sparse image stores nothing for zeroes); one word per sector keeps the
     * fill short, as this code may run emulated instruction by instruction. */
    if (mode == 3)
        for (uint32_t s = 0; s < qd * sectors; s++) *(volatile uint32_t *)(base + s * 512) = 0x5EC70000u | s;
    for (uint32_t r = 0; r < qd && submitted < n; r++, submitted++) {
        uint32_t blk = mode != 2 ? next++ % blocks : (seed = seed * 1103515245u + 12345u) % blocks;
        heads[r] = build(r, type, blk * sectors, base + r * bytes, bytes, 1);
    }
    vq_submit_many(&dev, heads, submitted);
    while (done < n) {
        if (!wait_used(&head, &len)) break;
        done++;
        uint32_t r = head / 4;
        if (statuses[r] != 0) break;
        if (submitted < n) {
            uint32_t blk = mode != 2 ? next++ % blocks : (seed = seed * 1103515245u + 12345u) % blocks;
            vq_submit(&dev, build(r, type, blk * sectors, base + r * bytes, bytes, 1));
            submitted++;
        }
    }
    report("bench_done", done);
    test_done();
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    int legacy = cmdline_uint(mbi, "legacy", 0), msix = cmdline_uint(mbi, "msix", 0), intx = cmdline_uint(mbi, "intx", 0);
    report("found", vdev_find(&dev, 2, 0x1001, legacy));
    if (!dev.slot && !dev.io) test_done();
    if (msix || intx) {
        interrupts_start(on_irq);
        use_irq = 1;
    }
    uint32_t table = 0;
    if (msix) {
        uint32_t cap = pci_find_cap(dev.slot, 0x11);
        table = pci_read32(0, dev.slot, 0, 0x10 + 4 * (pci_read32(0, dev.slot, 0, cap + 4) & 7)) & ~0xFu;
        for (uint32_t v = 0; v < 2; v++) {
            mmio_write32(table + 16 * v, 0xFEE00000); mmio_write32(table + 16 * v + 4, 0);
            mmio_write32(table + 16 * v + 8, 0x50 + v); mmio_write32(table + 16 * v + 12, 0);
        }
        pci_write32(0, dev.slot, 0, cap, pci_read32(0, dev.slot, 0, cap) | (1u << 31));
    }
    if (intx) {
        intx_gsi = 16 + dev.slot % 8;
        ioapic_route(intx_gsi, 0x52, 1);
    }
    uint32_t want = VIRTIO_F_INDIRECT_DESC * cmdline_uint(mbi, "indirect", 0) | VIRTIO_F_EVENT_IDX * cmdline_uint(mbi, "eventidx", 0)
        | (1u << 9) /* FLUSH */ | (1u << 6) /* BLK_SIZE */ | (1u << 5) /* RO */ | (1u << 14) /* WRITE_ZEROES */;
    uint8_t status = vdev_start(&dev, want, VIRTIO_F_VERSION_1_HI, 128, msix);
    report_hex("status", status);
    uint32_t capacity = vdev_cfg32(&dev, 0);          /* low word of the 512-byte-sector count */
    report("capacity", capacity);
    report("blk_size", (dev.features_lo & (1u << 6)) ? vdev_cfg32(&dev, 20) : 512);
    report("ro_feature", (dev.features_lo >> 5) & 1);
    report("indirect", (dev.features_lo >> 28) & 1);
    report("eventidx", (dev.features_lo >> 29) & 1);

    uint32_t mode = cmdline_uint(mbi, "bench", 0);
    if (mode) bench(mode, cmdline_uint(mbi, "n", 1000), cmdline_uint(mbi, "qd", 1), cmdline_uint(mbi, "reqkb", 256), capacity);

    uint32_t cross = cmdline_uint(mbi, "cross", capacity / 2);
    /* A: LBA 0-1 as two data descriptors. B: four sectors across `cross`, one descriptor or an indirect table.
     * C: the last sector. */
    fill(buf, 0, 2);
    report("write_a", run(T_OUT, 0, buf, 1024, 2));
    fill(buf, cross - 2, 4);
    if (dev.features_lo & VIRTIO_F_INDIRECT_DESC) {
        hdrs[0].type = T_OUT; hdrs[0].sector = cross - 2; statuses[0] = 0xEE;
        indirect_table[0] = (struct vring_desc){ (uint32_t)&hdrs[0], 16, VRING_DESC_F_NEXT, 1 };
        indirect_table[1] = (struct vring_desc){ (uint32_t)buf, 2048, VRING_DESC_F_NEXT, 2 };
        indirect_table[2] = (struct vring_desc){ (uint32_t)&statuses[0], 1, VRING_DESC_F_WRITE, 0 };
        set_desc(0, indirect_table, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
        uint32_t head, len;
        vq_submit(&dev, 0);
        report("write_b", wait_used(&head, &len) ? statuses[0] : 0xFD);
    } else {
        report("write_b", run(T_OUT, cross - 2, buf, 2048, 1));
    }
    fill(buf, capacity - 1, 1);
    report("write_c", run(T_OUT, capacity - 1, buf, 512, 1));
    report("flush", run(T_FLUSH, 0, 0, 0, 1));
    report("readback", verify(0, 2) + verify(cross - 2, 4) + verify(capacity - 1, 1));

    /* Write-zeroes: LBA 8 gets a pattern, then is zeroed. */
    fill(buf, 8, 1);
    run(T_OUT, 8, buf, 512, 1);
    static struct { uint64_t sector; uint32_t count, flags; } wz = { 8, 1, 0 };
    report("write_zeroes", run(T_WRITE_ZEROES, 0, &wz, sizeof wz, 1));
    for (uint32_t i = 0; i < 512; i++) chk[i] = 0xAA;
    run(T_IN, 8, chk, 512, 1);
    uint32_t zero = 1;
    for (uint32_t i = 0; i < 512; i++) if (chk[i]) zero = 0;
    report("zeroes_read_back", zero);

    char id[21] = { 0 };
    report("get_id", run(T_GET_ID, 0, id, 20, 1));
    report_str("id", id);
    report("read_past_end", run(T_IN, capacity, chk, 512, 1));
    report("unknown_type", run(99, 0, chk, 512, 1));

    /* Eight reads in flight at once. */
    uint16_t heads[8];
    for (uint32_t r = 0; r < 8; r++) heads[r] = build(r, T_IN, r & 1, chk + 512 * (r % 2), 512, 1);
    vq_submit_many(&dev, heads, 8);
    uint32_t completed = 0, head, len;
    while (completed < 8 && wait_used(&head, &len)) completed += statuses[head / 4] == 0;
    report("in_flight_completed", completed);

    if (msix) {
        /* Re-point the queue's vector (entry 0) from 0x50 to 0x51, masked while it changes as drivers do:
         * the next completion must arrive at 0x51 and nothing more at 0x50. Interrupts are taken only while
         * waiting, so first let any still latched for earlier requests arrive. */
        static volatile uint32_t never;
        wait_for(&never, 1, 5);
        uint32_t old_before = irqs;
        mmio_write32(table + 12, 1);
        mmio_write32(table + 8, 0x51);
        mmio_write32(table + 12, 0);
        report("retarget_read", run(T_IN, 0, chk, 512, 1));
        wait_for(&retargeted_irqs, 1, 200);
        report("retargeted_irqs", retargeted_irqs > 0);
        report("old_vector_irqs_after", irqs - old_before);
    }

    if (!cmdline_uint(mbi, "hostile", 1)) test_done();   /* what devices do with broken chains differs (QEMU stops the device) */
    /* Hostile chains: a buffer outside RAM, then a descriptor that points at itself. The device must
     * complete them without a status and carry on. */
    set_desc(0, &hdrs[0], 16, VRING_DESC_F_NEXT, 1);
    hdrs[0].type = T_IN; hdrs[0].sector = 0;
    set_desc(1, (void *)0xF0000000u, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
    set_desc(2, (const void *)&statuses[0], 1, VRING_DESC_F_WRITE, 0);
    statuses[0] = 0xEE;
    vq_submit(&dev, 0);
    report("outside_ram_completed", wait_used(&head, &len));
    report("outside_ram_len", len);
    set_desc(4, &hdrs[1], 16, VRING_DESC_F_NEXT, 4);
    vq_submit(&dev, 4);
    report("loop_completed", wait_used(&head, &len));
    report("alive_after_bad", verify(0, 2));
    report_hex("status_after", vdev_status(&dev));
    if (use_irq) report("queue_irqs", irqs > 0);
    test_done();
}
