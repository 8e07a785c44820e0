/* vrng: reads 4 KiB from virtio-rng (virtio-rnd) in two requests and reports how varied the bytes are. */
#include "lib/guest.h"
#include "lib/virtio.h"

static struct vdev dev;
static uint8_t pool[4096] __attribute__((aligned(4096)));

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    report("found", vdev_find(&dev, 4, 0x1005, cmdline_uint(mbi, "legacy", 0)));
    report_hex("status", vdev_start(&dev, 0, VIRTIO_F_VERSION_1_HI, 16, 0));
    uint32_t total = 0, head, len;
    for (uint32_t half = 0; half < 2; half++) {
        dev.desc[half].addr = (uint32_t)(pool + 2048 * half);
        dev.desc[half].len = 2048;
        dev.desc[half].flags = VRING_DESC_F_WRITE;
        vq_submit(&dev, (uint16_t)half);
        if (vq_wait(&dev, &head, &len, 10000000)) total += len;
    }
    report("bytes", total);
    /* Distinct byte values and the longest run of one value: random data has ~256 and short runs. */
    uint8_t seen[256] = { 0 };
    uint32_t distinct = 0, run = 1, longest = 1;
    for (uint32_t i = 0; i < sizeof pool; i++) {
        if (!seen[pool[i]]) { seen[pool[i]] = 1; distinct++; }
        run = i && pool[i] == pool[i - 1] ? run + 1 : 1;
        if (run > longest) longest = run;
    }
    report("distinct", distinct);
    report("longest_run", longest);
    test_done();
}
