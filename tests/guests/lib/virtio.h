/* A minimal virtio-pci driver for the test guests: finds a device, negotiates features through the
 * modern (virtio 1.x, BAR capabilities) or the legacy (I/O BAR 0) interface, and runs queue 0 as a
 * split ring the guest polls or takes interrupts for. Written from the virtio 1.2 specification. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include <stdint.h>

struct vring_desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4

#define VIRTIO_F_INDIRECT_DESC (1u << 28)
#define VIRTIO_F_EVENT_IDX (1u << 29)
#define VIRTIO_F_VERSION_1_HI 1u      /* bit 32: bit 0 of the high word */

struct vdev {
    uint32_t slot, legacy;
    uint32_t io;                                       /* legacy: I/O BAR 0 */
    uint32_t common, isr, devcfg, notify, notify_mult; /* modern: addresses in the memory BAR */
    uint32_t features_lo, features_hi;                 /* negotiated */
    uint16_t qsize, avail_idx, used_idx;
    volatile struct vring_desc *desc;
    volatile uint16_t *avail;                          /* flags, idx, ring[], used_event */
    volatile uint8_t *used;                            /* flags, idx, ring[{id,len}], avail_event */
};

/* Finds a virtio device of `type` on bus 0 by its transitional id (`transitional_id`) or its modern-only id
 * (0x1040 + type); returns 0 when absent. */
int vdev_find(struct vdev *d, uint16_t type, uint16_t transitional_id, int legacy);
/* The nth (from 0) such device, in slot order. */
int vdev_find_nth(struct vdev *d, uint16_t type, uint16_t transitional_id, int legacy, int nth);
/* Reset, ACKNOWLEDGE|DRIVER, feature negotiation (FEATURES_OK for modern), queue 0 of up to qmax entries,
 * DRIVER_OK. want_lo/want_hi are ANDed with what the device offers. Returns the final status byte. */
uint8_t vdev_start(struct vdev *d, uint32_t want_lo, uint32_t want_hi, uint16_t qmax, int msix);
uint32_t vdev_offered_lo(struct vdev *d);
uint8_t vdev_status(struct vdev *d);
uint8_t vdev_isr(struct vdev *d);
uint8_t vdev_cfg8(struct vdev *d, uint32_t off);
uint32_t vdev_cfg32(struct vdev *d, uint32_t off);
/* Makes chain `head` available and notifies the device (after a barrier). */
void vq_submit(struct vdev *d, uint16_t head);
/* Puts several heads on the ring, then notifies once. */
void vq_submit_many(struct vdev *d, const uint16_t *heads, uint32_t n);
/* Takes the next used entry if there is one. */
int vq_poll(struct vdev *d, uint32_t *head, uint32_t *len);
/* Polls (spinning) for the next used entry, up to `spins` tries; returns 0 on timeout. */
int vq_wait(struct vdev *d, uint32_t *head, uint32_t *len, uint32_t spins);

#endif
