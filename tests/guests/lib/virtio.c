#include "guest.h"
#include "virtio.h"

/* Queue memory: descriptors, available ring, then the used ring on the next 4 KiB page, the layout
 * legacy devices require (queue address = page number); the modern interface takes the same addresses. */
static uint8_t ring_mem[16384] __attribute__((aligned(4096)));

static inline void barrier(void) { __asm__ volatile("lock; addl $0, (%%esp)" ::: "memory"); }

int vdev_find(struct vdev *d, uint16_t type, uint16_t transitional_id, int legacy)
{
    return vdev_find_nth(d, type, transitional_id, legacy, 0);
}

int vdev_find_nth(struct vdev *d, uint16_t type, uint16_t transitional_id, int legacy, int nth)
{
    for (uint32_t s = 0; s < 32; s++) {
        uint32_t id = pci_read32(0, s, 0, 0);
        if (id != ((uint32_t)transitional_id << 16 | 0x1AF4) && id != ((uint32_t)(0x1040 + type) << 16 | 0x1AF4)) continue;
        if (nth-- > 0) continue;
        d->slot = s;
        d->legacy = legacy;
        pci_write32(0, s, 0, 4, pci_read32(0, s, 0, 4) | 0x7);   /* I/O, memory, bus master */
        d->io = pci_read32(0, s, 0, 0x10) & ~3u;
        for (uint32_t cap = pci_read32(0, s, 0, 0x34) & 0xFF; cap; cap = (pci_read32(0, s, 0, cap) >> 8) & 0xFF) {
            uint32_t h = pci_read32(0, s, 0, cap);
            if ((h & 0xFF) != 0x09) continue;
            uint32_t type = (h >> 24) & 0xFF, bar = pci_read32(0, s, 0, cap + 4) & 0xFF;
            uint32_t base = pci_read32(0, s, 0, 0x10 + 4 * bar) & ~0xFu;
            uint32_t at = base + pci_read32(0, s, 0, cap + 8);
            if (type == 1) d->common = at;
            else if (type == 2) { d->notify = at; d->notify_mult = pci_read32(0, s, 0, cap + 16); }
            else if (type == 3) d->isr = at;
            else if (type == 4) d->devcfg = at;
        }
        return 1;
    }
    return 0;
}

static void w8(struct vdev *d, uint32_t off, uint8_t v) { *(volatile uint8_t *)(d->common + off) = v; }
static void w16(struct vdev *d, uint32_t off, uint16_t v) { *(volatile uint16_t *)(d->common + off) = v; }
static void w32(struct vdev *d, uint32_t off, uint32_t v) { *(volatile uint32_t *)(d->common + off) = v; }
static uint8_t r8(struct vdev *d, uint32_t off) { return *(volatile uint8_t *)(d->common + off); }
static uint16_t r16(struct vdev *d, uint32_t off) { return *(volatile uint16_t *)(d->common + off); }
static uint32_t r32(struct vdev *d, uint32_t off) { return *(volatile uint32_t *)(d->common + off); }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

uint8_t vdev_status(struct vdev *d) { return d->legacy ? inb(d->io + 0x12) : r8(d, 0x14); }
static void set_status(struct vdev *d, uint8_t s) { if (d->legacy) outb(d->io + 0x12, s); else w8(d, 0x14, s); }
uint8_t vdev_isr(struct vdev *d) { return d->legacy ? inb(d->io + 0x13) : *(volatile uint8_t *)d->isr; }

static uint32_t legacy_cfg(struct vdev *d) { return d->io + (d->legacy == 2 ? 0x18 : 0x14); }
uint8_t vdev_cfg8(struct vdev *d, uint32_t off) { return d->legacy ? inb(legacy_cfg(d) + off) : *(volatile uint8_t *)(d->devcfg + off); }
uint32_t vdev_cfg32(struct vdev *d, uint32_t off) { return d->legacy ? inl(legacy_cfg(d) + off) : *(volatile uint32_t *)(d->devcfg + off); }

uint32_t vdev_offered_lo(struct vdev *d)
{
    if (d->legacy) return inl(d->io);
    w32(d, 0x00, 0);
    return r32(d, 0x04);
}

uint8_t vdev_start(struct vdev *d, uint32_t want_lo, uint32_t want_hi, uint16_t qmax, int msix)
{
    set_status(d, 0);
    set_status(d, 1);
    set_status(d, 1 | 2);
    uint32_t lo = vdev_offered_lo(d) & want_lo, hi = 0;
    uint16_t qsize;
    if (d->legacy) {
        outl(d->io + 0x04, lo);
        outw(d->io + 0x0E, 0);
        qsize = inw(d->io + 0x0C);      /* fixed by a legacy device */
        if (msix) { d->legacy = 2; outw(d->io + 0x14, 1); outw(d->io + 0x16, 0); }
    } else {
        w32(d, 0x00, 1);
        hi = r32(d, 0x04) & want_hi;
        w32(d, 0x08, 0); w32(d, 0x0C, lo);
        w32(d, 0x08, 1); w32(d, 0x0C, hi);
        set_status(d, 1 | 2 | 8);
        if (!(vdev_status(d) & 8)) return vdev_status(d);
        w16(d, 0x16, 0);
        qsize = r16(d, 0x18);
        if (qsize > qmax) { qsize = qmax; w16(d, 0x18, qsize); }
        if (msix) { w16(d, 0x10, 1); w16(d, 0x1A, 0); }
    }
    d->features_lo = lo; d->features_hi = hi;
    d->qsize = qsize;
    for (uint32_t i = 0; i < sizeof ring_mem; i++) ring_mem[i] = 0;
    d->desc = (volatile struct vring_desc *)ring_mem;
    d->avail = (volatile uint16_t *)(ring_mem + 16 * qsize);
    d->used = ring_mem + ((16 * qsize + 6 + 2 * qsize + 4095) & ~4095u);
    d->avail_idx = d->used_idx = 0;
    if (d->legacy) {
        outl(d->io + 0x08, (uint32_t)ring_mem >> 12);
    } else {
        w32(d, 0x20, (uint32_t)d->desc); w32(d, 0x24, 0);
        w32(d, 0x28, (uint32_t)d->avail); w32(d, 0x2C, 0);
        w32(d, 0x30, (uint32_t)d->used); w32(d, 0x34, 0);
        w16(d, 0x1C, 1);
    }
    set_status(d, d->legacy ? (1 | 2 | 4) : (1 | 2 | 4 | 8));
    return vdev_status(d);
}

static void notify(struct vdev *d)
{
    barrier();
    /* With EVENT_IDX the device says (avail_event) when it wants a kick; otherwise unless NO_NOTIFY. */
    if (d->legacy) outw(d->io + 0x10, 0);
    else *(volatile uint16_t *)(d->notify + 0 * d->notify_mult) = 0;
}

void vq_submit_many(struct vdev *d, const uint16_t *heads, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) d->avail[2 + (d->avail_idx++ % d->qsize)] = heads[i];
    barrier();
    d->avail[1] = d->avail_idx;
    notify(d);
}

void vq_submit(struct vdev *d, uint16_t head) { vq_submit_many(d, &head, 1); }

int vq_poll(struct vdev *d, uint32_t *head, uint32_t *len)
{
    uint16_t idx = *(volatile uint16_t *)(d->used + 2);
    if (idx == d->used_idx) return 0;
    barrier();
    volatile uint32_t *e = (volatile uint32_t *)(d->used + 4 + 8 * (d->used_idx % d->qsize));
    *head = e[0];
    *len = e[1];
    d->used_idx++;
    if (d->features_lo & VIRTIO_F_EVENT_IDX) d->avail[2 + d->qsize] = d->used_idx;  /* used_event */
    return 1;
}

int vq_wait(struct vdev *d, uint32_t *head, uint32_t *len, uint32_t spins)
{
    for (uint32_t i = 0; i < spins; i++) {
        if (vq_poll(d, head, len)) return 1;
        __asm__ volatile("pause");
    }
    return 0;
}
