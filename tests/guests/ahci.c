/* ahci: a minimal AHCI 1.3.1 driver guest. Finds every SATA AHCI controller (class 01/06/01) on bus 0, resets
 * it (GHC.HR), brings up each implemented port (command list and FIS area in guest memory, COMRESET through
 * PxSCTL.DET, PxSIG tells an ATA disk from an ATAPI drive) and then:
 *  - on the first disk: IDENTIFY DEVICE; WRITE/READ DMA EXT with the buffers split over several PRDT entries;
 *    READ/WRITE DMA (28-bit); WRITE then READ FPDMA QUEUED on several tags issued at once (PxSACT and PxCI set
 *    together), counting the most tags seen outstanding; the last sector; SET FEATURES; FLUSH CACHE EXT;
 *    DATA SET MANAGEMENT TRIM; READ LOG EXT (the NCQ error log); a read past the end; an unknown command.
 *  - on the first CD drive: IDENTIFY PACKET DEVICE, INQUIRY, TEST UNIT READY until ready (REQUEST SENSE clears
 *    the unit attention), READ CAPACITY, READ(10) and READ(12) of the ISO 9660 primary volume descriptor
 *    (sector 16), then HELLO.TXT through the root directory (its size, first bytes and FNV-1a), GET EVENT STATUS
 *    NOTIFICATION, a read past the end (sense 05/21), MODE SENSE(10), READ TOC, GET CONFIGURATION, and last
 *    PREVENT MEDIUM REMOVAL / START STOP UNIT: the eject refused while locked, then done (the drive is left empty).
 * The data the disk gets is pattern(lba, i) = lba*31 + i*7 + 1 per 512-byte unit, byte offsets being what
 * counts, so the host can check the image whatever the logical sector size.
 * Options: irq=1 (MSI and PxIE instead of polling PxIS), ncq=N (tags in the NCQ burst, default 8), ncqrounds=N
 * (bursts per direction, default 3),
 * hostile=1 (PRDT entries outside RAM, an empty PRDT, a bad FIS type: each must end in an error and leave the
 * port working; QEMU handles some of them differently), watch=1 (after the CD's first checks, poll TEST UNIT
 * READY and GET EVENT STATUS NOTIFICATION and print every change: the host ejects and inserts media meanwhile;
 * watchms=N bounds it, default 60000). Results are "XHYVE-TEST key=value" lines; a command's result is 0 on
 * success, else (status << 8 | error) from PxTFD, 0x10000 when PxIS.TFES was missing, 0xFFFFFF on a timeout. */
#include "lib/guest.h"
#include "lib/intr.h"

/* HBA and port registers (AHCI 1.3.1 §3). */
#define CAP 0x00
#define GHC 0x04
#define HIS 0x08
#define PI 0x0C
#define VS 0x10
#define GHC_HR 1u
#define GHC_IE 2u
#define GHC_AE (1u << 31)
#define P_CLB 0x00
#define P_CLBU 0x04
#define P_FB 0x08
#define P_FBU 0x0C
#define P_IS 0x10
#define P_IE 0x14
#define P_CMD 0x18
#define P_TFD 0x20
#define P_SIG 0x24
#define P_SSTS 0x28
#define P_SCTL 0x2C
#define P_SERR 0x30
#define P_SACT 0x34
#define P_CI 0x38
#define CMD_ST 1u
#define CMD_SUD 2u
#define CMD_POD 4u
#define CMD_CLO 8u
#define CMD_FRE 0x10u
#define CMD_FR 0x4000u
#define CMD_CR 0x8000u
#define CMD_ATAPI (1u << 24)
#define IS_DHRS 1u
#define IS_PSS 2u
#define IS_DSS 4u
#define IS_SDBS 8u
#define IS_TFES (1u << 30)
#define IS_ERRORS 0xFD800000u  /* TFES, HBFS, HBDS, IFS, INFS, OFS, IPMS */

#define SIG_ATA 0x00000101u
#define SIG_ATAPI 0xEB140101u

#define R_TIMEOUT 0xFFFFFFu
#define R_NO_TFES 0x10000u

struct cmd_header { uint32_t flags, prdbc, ctba, ctbau, reserved[4]; };
struct prd { uint32_t dba, dbau, reserved, dbc; };
struct cmd_table { uint8_t cfis[64]; uint8_t acmd[16]; uint8_t reserved[48]; struct prd prdt[8]; };  /* 256 bytes */

#define MAX_PORTS 4
struct port {
    uint32_t regs, sig, slots;
    volatile uint32_t is_acc;                  /* PxIS bits seen (and cleared) since the last command */
    struct cmd_header *cl;
    uint8_t *fis;
    struct cmd_table *ct;
};
static struct cmd_header cmd_lists[MAX_PORTS][32] __attribute__((aligned(1024)));
static uint8_t fis_areas[MAX_PORTS][256] __attribute__((aligned(256)));
static struct cmd_table tables[MAX_PORTS][32] __attribute__((aligned(128)));
static struct port ports[MAX_PORTS];
static uint32_t nports;
static uint32_t hbas[4], nhbas;
static int use_irq;
static volatile uint32_t irqs;

#define NCQ_BYTES 16384
static uint8_t big[32 * NCQ_BYTES] __attribute__((aligned(4096)));
static uint8_t buf[16384] __attribute__((aligned(4096)));
static uint8_t chk[16384] __attribute__((aligned(4096)));

static inline void barrier(void) { __asm__ volatile("lock; addl $0, (%%esp)" ::: "memory"); }
static uint32_t rd(struct port *p, uint32_t r) { return mmio_read32(p->regs + r); }
static void wr(struct port *p, uint32_t r, uint32_t v) { mmio_write32(p->regs + r, v); }

/* --- time, from the HPET main counter --- */
#define HPET 0xFED00000u
static uint32_t ticks_per_ms;
static void timer_init(void)
{
    uint32_t period_fs = mmio_read32(HPET + 4);
    ticks_per_ms = (uint32_t)(1000000000000ull / period_fs);
    mmio_write32(HPET + 0x10, mmio_read32(HPET + 0x10) | 1);
}
static uint32_t now(void) { return mmio_read32(HPET + 0xF0); }
static uint32_t since_ms(uint32_t start) { return (now() - start) / ticks_per_ms; }
static void delay_ms(uint32_t ms) { uint32_t s = now(); while (since_ms(s) < ms) __asm__ volatile("pause"); }

/* --- interrupts: the handler moves PxIS into is_acc (write-1-to-clear), then clears IS, as drivers do --- */
static void collect(struct port *p)
{
    uint32_t s = rd(p, P_IS);
    if (s) { wr(p, P_IS, s); p->is_acc |= s; }
}
static void on_irq(void)
{
    if (irq_vector != 0x50) return;
    irqs++;
    for (uint32_t i = 0; i < nports; i++) collect(&ports[i]);
    for (uint32_t h = 0; h < nhbas; h++) mmio_write32(hbas[h] + HIS, mmio_read32(hbas[h] + HIS));
}
/* One step of a wait: take the interrupt (or the 1 ms watchdog tick) or poll PxIS. */
static void wait_step(struct port *p)
{
    if (use_irq) wait_for_interrupt();
    else { collect(p); __asm__ volatile("pause"); }
}

/* --- ports --- */
static int wait_clear(struct port *p, uint32_t reg, uint32_t mask, uint32_t ms)
{
    uint32_t s = now();
    while (rd(p, reg) & mask) if (since_ms(s) > ms) return 0;
    return 1;
}

static void port_stop(struct port *p)
{
    wr(p, P_CMD, rd(p, P_CMD) & ~CMD_ST);
    wait_clear(p, P_CMD, CMD_CR, 500);
}

static void port_start(struct port *p)
{
    wr(p, P_SERR, 0xFFFFFFFFu);
    wr(p, P_IS, 0xFFFFFFFFu);
    p->is_acc = 0;
    wr(p, P_CMD, rd(p, P_CMD) | CMD_ST | (p->sig == SIG_ATAPI ? CMD_ATAPI : 0));
}

/* AHCI §6.2.2.1: after a task-file error, ST off, wait for CR, clear SERR and IS, CLO (or COMRESET) when
 * BSY or DRQ stayed set, ST on again. */
static void recover(struct port *p, uint32_t cap)
{
    port_stop(p);
    if (rd(p, P_TFD) & 0x88) {
        if (cap & (1u << 24)) { wr(p, P_CMD, rd(p, P_CMD) | CMD_CLO); wait_clear(p, P_CMD, CMD_CLO, 500); }
        else { wr(p, P_SCTL, 1); delay_ms(2); wr(p, P_SCTL, 0); delay_ms(20); }
    }
    port_start(p);
}

/* Brings up port n of an HBA: stop, command list and FIS area, FRE, COMRESET, wait for the link and the
 * signature. Returns whether a device answered. */
static int port_init(uint32_t abar, uint32_t n, uint32_t cap)
{
    if (nports == MAX_PORTS) return 0;
    struct port *p = &ports[nports];
    p->regs = abar + 0x100 + 0x80 * n;
    p->cl = cmd_lists[nports];
    p->fis = fis_areas[nports];
    p->ct = tables[nports];
    p->slots = ((cap >> 8) & 0x1F) + 1;
    wr(p, P_CMD, rd(p, P_CMD) & ~(CMD_ST | CMD_FRE));
    if (!wait_clear(p, P_CMD, CMD_CR | CMD_FR, 500)) { report("port_stop_timeout", n); return 0; }
    for (uint32_t s = 0; s < 32; s++) {
        p->cl[s] = (struct cmd_header){ 0, 0, (uint32_t)&p->ct[s], 0, { 0, 0, 0, 0 } };
    }
    wr(p, P_CLB, (uint32_t)p->cl); wr(p, P_CLBU, 0);
    wr(p, P_FB, (uint32_t)p->fis); wr(p, P_FBU, 0);
    wr(p, P_SERR, 0xFFFFFFFFu);
    wr(p, P_IS, 0xFFFFFFFFu);
    wr(p, P_CMD, rd(p, P_CMD) | CMD_FRE | CMD_SUD | CMD_POD);
    /* COMRESET: DET=1 for at least 1 ms, then 0; the link comes up with DET=3 and the device's D2H FIS
     * (its signature) lands in PxSIG. */
    wr(p, P_SCTL, (rd(p, P_SCTL) & ~0xFu) | 1);
    delay_ms(2);
    wr(p, P_SCTL, rd(p, P_SCTL) & ~0xFu);
    uint32_t s = now();
    while ((rd(p, P_SSTS) & 0xF) != 3) if (since_ms(s) > 50) return 0;
    wait_clear(p, P_TFD, 0x88, 1000);
    p->sig = rd(p, P_SIG);
    wr(p, P_IE, use_irq ? (IS_DHRS | IS_PSS | IS_DSS | IS_SDBS | IS_ERRORS) : 0);
    port_start(p);
    nports++;
    return 1;
}

/* --- commands --- */
static void fis_h2d(struct port *p, uint32_t slot, uint8_t cmd, uint16_t features, uint32_t lba_lo, uint32_t lba_hi,
                    uint16_t count, uint8_t device)
{
    uint8_t *f = p->ct[slot].cfis;
    for (int i = 0; i < 64; i++) f[i] = 0;
    f[0] = 0x27; f[1] = 0x80; f[2] = cmd; f[3] = (uint8_t)features;
    f[4] = (uint8_t)lba_lo; f[5] = (uint8_t)(lba_lo >> 8); f[6] = (uint8_t)(lba_lo >> 16); f[7] = device;
    f[8] = (uint8_t)(lba_lo >> 24); f[9] = (uint8_t)lba_hi; f[10] = (uint8_t)(lba_hi >> 8); f[11] = (uint8_t)(features >> 8);
    f[12] = (uint8_t)count; f[13] = (uint8_t)(count >> 8);
}

/* The header of `slot`: CFL 5, the PRDT from (addr, len) pairs, W for writes, A for a PACKET. */
static void header(struct port *p, uint32_t slot, int write, int atapi, const uint32_t *pieces, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        p->ct[slot].prdt[i] = (struct prd){ pieces[2 * i], 0, 0, (pieces[2 * i + 1] - 1) & 0x3FFFFF };
    p->cl[slot].flags = 5 | (atapi ? 1u << 5 : 0) | (write ? 1u << 6 : 0) | (n << 16);
    p->cl[slot].prdbc = 0;
}

/* Issues `slot` and waits for PxCI to clear (or a task-file error); recovers the port after an error. */
static uint32_t run_slot(struct port *p, uint32_t slot, uint32_t cap)
{
    p->is_acc = 0;
    barrier();
    wr(p, P_CI, 1u << slot);
    uint32_t s = now();
    while (rd(p, P_CI) & (1u << slot)) {
        if (p->is_acc & IS_ERRORS) break;
        if (since_ms(s) > 5000) { recover(p, cap); return R_TIMEOUT; }
        wait_step(p);
    }
    collect(p);
    uint32_t tfd = rd(p, P_TFD);
    if (!(tfd & 1) && !(p->is_acc & IS_TFES)) return 0;
    uint32_t r = ((tfd & 0xFF) << 8) | ((tfd >> 8) & 0xFF) | ((p->is_acc & IS_TFES) ? 0 : R_NO_TFES);
    recover(p, cap);
    return r;
}

static uint32_t g_cap;

static uint32_t ata(struct port *p, uint8_t cmd, uint16_t features, uint32_t lba, uint16_t count, int write,
                    const uint32_t *pieces, uint32_t n)
{
    /* 28-bit commands carry LBA 27:24 in DEVICE 3:0 */
    uint8_t device = cmd == 0xC8 || cmd == 0xCA ? (uint8_t)(0x40 | ((lba >> 24) & 0xF)) : 0x40;
    fis_h2d(p, 0, cmd, features, lba, 0, count, device);
    header(p, 0, write, 0, pieces, n);
    return run_slot(p, 0, g_cap);
}

static uint32_t piece1[2];
static const uint32_t *one(void *addr, uint32_t len) { piece1[0] = (uint32_t)addr; piece1[1] = len; return piece1; }

static void zero(uint8_t *b, uint32_t n) { for (uint32_t i = 0; i < n; i++) b[i] = 0; }
static uint8_t pattern(uint32_t lba, uint32_t i) { return (uint8_t)(lba * 31 + i * 7 + 1); }
static void fill(uint8_t *b, uint32_t offset, uint32_t bytes)
{
    for (uint32_t i = 0; i < bytes; i++) b[i] = pattern((offset + i) / 512, (offset + i) % 512);
}
static uint32_t matches(const uint8_t *b, uint32_t offset, uint32_t bytes)
{
    for (uint32_t i = 0; i < bytes; i++) if (b[i] != pattern((offset + i) / 512, (offset + i) % 512)) return 0;
    return 1;
}

static void ata_string(char *out, const uint16_t *id, uint32_t first, uint32_t words)
{
    uint32_t n = 0;
    for (uint32_t w = first; w < first + words; w++) { out[n++] = (char)(id[w] >> 8); out[n++] = (char)id[w]; }
    while (n && out[n - 1] == ' ') n--;
    out[n] = 0;
    uint32_t lead = 0;
    while (out[lead] == ' ') lead++;
    for (uint32_t i = 0; i <= n - lead; i++) out[i] = out[i + lead];
}

static uint32_t popcount(uint32_t v) { uint32_t c = 0; for (; v; v &= v - 1) c++; return c; }

static void disk_tests(struct port *p, uint32_t ncq_tags, uint32_t rounds, int hostile)
{
    uint16_t id[256];
    report("disk_identify", ata(p, 0xEC, 0, 0, 0, 0, one(id, 512), 1));
    char s[48];
    ata_string(s, id, 27, 20); report_str("disk_model", s);
    ata_string(s, id, 10, 10); report_str("disk_serial", s);
    uint32_t lba48 = (id[83] >> 10) & 1;
    uint32_t capacity = lba48 ? id[100] | (uint32_t)id[101] << 16 : id[60] | (uint32_t)id[61] << 16;
    uint32_t logical = 512, physical;
    if ((id[106] & 0xC000) == 0x4000 && (id[106] & (1u << 12))) logical = 2 * (id[117] | (uint32_t)id[118] << 16);
    physical = (id[106] & 0xC000) == 0x4000 && (id[106] & (1u << 13)) ? logical << (id[106] & 0xF) : logical;
    uint32_t ncq = (id[76] >> 8) & 1, depth = (id[75] & 0x1F) + 1;
    report("disk_lba48", lba48);
    report("disk_capacity", capacity);
    report("disk_capacity28", id[60] | (uint32_t)id[61] << 16);
    report("disk_logical_sector", logical);
    report("disk_physical_sector", physical);
    report("disk_ncq", ncq);
    report("disk_ncq_depth", ncq ? depth : 0);
    report("disk_trim", id[169] & 1);
    report("disk_dma", (id[49] >> 8) & 1);
    uint32_t ss = logical;

    /* WRITE DMA EXT of 8 KiB at LBA 0 from two PRDT entries (3 KiB + 5 KiB, splitting a sector), READ DMA EXT
     * into three (1 KiB + 4 KiB + 3 KiB). */
    fill(buf, 0, 8192);
    uint32_t w2[4] = { (uint32_t)buf, 3072, (uint32_t)buf + 3072, 5120 };
    report("dma_write", ata(p, 0x35, 0, 0, (uint16_t)(8192 / ss), 1, w2, 2));
    report("dma_write_prdbc", p->cl[0].prdbc);
    zero(chk, 8192);
    uint32_t r3[6] = { (uint32_t)chk, 1024, (uint32_t)chk + 1024, 4096, (uint32_t)chk + 5120, 3072 };
    report("dma_read", ata(p, 0x25, 0, 0, (uint16_t)(8192 / ss), 0, r3, 3));
    report("dma_read_prdbc", p->cl[0].prdbc);
    report("dma_readback", matches(chk, 0, 8192));

    /* The 28-bit pair at byte 16 KiB. */
    fill(buf, 16384, 4096);
    report("dma28_write", ata(p, 0xCA, 0, 16384 / ss, (uint16_t)(4096 / ss), 1, one(buf, 4096), 1));
    zero(chk, 4096);
    report("dma28_read", ata(p, 0xC8, 0, 16384 / ss, (uint16_t)(4096 / ss), 0, one(chk, 4096), 1));
    report("dma28_readback", matches(chk, 16384, 4096));

    /* The last sector. */
    uint32_t last = capacity - 1;
    fill(buf, last * ss, ss);
    report("last_write", ata(p, 0x35, 0, last, 1, 1, one(buf, ss), 1));
    zero(chk, ss);
    ata(p, 0x25, 0, last, 1, 0, one(chk, ss), 1);
    report("last_readback", matches(chk, last * ss, ss));

    report("set_features", ata(p, 0xEF, 0x02, 0, 0, 0, 0, 0));      /* enable the write cache */

    /* NCQ: tag t writes 16 KiB at byte 64 KiB + 16 KiB * t; all tags issued with one PxSACT and one PxCI write. */
    if (ncq_tags > depth) ncq_tags = depth;
    if (ncq_tags > p->slots) ncq_tags = p->slots;
    if (!ncq || !(g_cap & (1u << 30))) ncq_tags = 0;
    report("ncq_tags", ncq_tags);
    uint32_t mask = ncq_tags == 32 ? 0xFFFFFFFFu : (1u << ncq_tags) - 1;
    /* Each burst runs `rounds` times: how many tags are still outstanding when the guest first looks depends on
     * timing, so the most over a few bursts is what says the device had several in flight. */
    for (uint32_t pass = 0, most = 0, result = 0; pass < 2 * rounds && ncq_tags; pass++) {
        int write = pass < rounds;
        if (pass == rounds) most = 0;
        for (uint32_t t = 0; t < ncq_tags; t++) {
            uint32_t off = 65536 + t * NCQ_BYTES;
            if (write) fill(big + t * NCQ_BYTES, off, NCQ_BYTES); else zero(big + t * NCQ_BYTES, NCQ_BYTES);
            /* FPDMA QUEUED: the sector count in FEATURES, the tag in COUNT(7:3), FUA clear. */
            fis_h2d(p, t, write ? 0x61 : 0x60, (uint16_t)(NCQ_BYTES / ss), off / ss, 0, (uint16_t)(t << 3), 0x40);
            header(p, t, write, 0, one(big + t * NCQ_BYTES, NCQ_BYTES), 1);
        }
        p->is_acc = 0;
        barrier();
        wr(p, P_SACT, mask);
        wr(p, P_CI, mask);
        uint32_t start = now();
        for (;;) {
            uint32_t act = rd(p, P_SACT) & mask, ci = rd(p, P_CI) & mask, out = popcount(act | ci);
            if (out > most) most = out;
            if (!act && !ci) break;
            if (p->is_acc & IS_ERRORS) { result |= rd(p, P_TFD) & 0xFFFF; recover(p, g_cap); break; }
            if (since_ms(start) > 10000) { result = R_TIMEOUT; recover(p, g_cap); break; }
            wait_step(p);
        }
        collect(p);
        if (pass != rounds - 1 && pass != 2 * rounds - 1) continue;
        if (write) {
            report("ncq_write", result);
            report("ncq_write_max_outstanding", most);
            report("ncq_write_sdb", (p->is_acc & IS_SDBS) != 0);
        } else {
            uint32_t good = 0;
            for (uint32_t t = 0; t < ncq_tags; t++) good += matches(big + t * NCQ_BYTES, 65536 + t * NCQ_BYTES, NCQ_BYTES);
            report("ncq_read", result);
            report("ncq_read_max_outstanding", most);
            report("ncq_read_sdb", (p->is_acc & IS_SDBS) != 0);
            report("ncq_readback", good);
        }
        result = 0;
    }

    report("flush_ext", ata(p, 0xEA, 0, 0, 0, 0, 0, 0));
    report("flush", ata(p, 0xE7, 0, 0, 0, 0, 0, 0));

    /* TRIM: 8 KiB at byte 1 MiB gets the pattern, then DATA SET MANAGEMENT discards it (one 512-byte block of
     * range entries: LBA in bits 47:0, length in 63:48). */
    fill(buf, 1 << 20, 8192);
    ata(p, 0x35, 0, (1u << 20) / ss, (uint16_t)(8192 / ss), 1, one(buf, 8192), 1);
    zero(chk, 512);
    uint32_t *range = (uint32_t *)chk;
    range[0] = (1u << 20) / ss; range[1] = (8192 / ss) << 16;
    report("trim", ata(p, 0x06, 0x01, 0, 1, 1, one(chk, 512), 1));
    for (uint32_t i = 0; i < 8192; i++) chk[i] = 0xAA;
    report("trim_read", ata(p, 0x25, 0, (1u << 20) / ss, (uint16_t)(8192 / ss), 0, one(chk, 8192), 1));
    uint32_t zeros = 1;
    for (uint32_t i = 0; i < 8192; i++) if (chk[i]) zeros = 0;
    report("trim_reads_zero", zeros);
    report("trim_reads_old", matches(chk, 1 << 20, 8192));

    /* READ LOG EXT of the NCQ command error log (10h): after a clean run, no error recorded (NQ clear, tag 0). */
    for (uint32_t i = 0; i < 512; i++) chk[i] = 0xAA;
    report("read_log_ncq", ata(p, 0x2F, 0, 0x10, 1, 0, one(chk, 512), 1));
    report_hex("read_log_ncq_byte0", chk[0]);

    report("read_past_end", ata(p, 0x25, 0, capacity, 1, 0, one(chk, ss), 1) != 0);
    report("unknown_command", ata(p, 0xFF, 0, 0, 0, 0, 0, 0) != 0);
    zero(chk, 8192);
    ata(p, 0x25, 0, 0, (uint16_t)(8192 / ss), 0, one(chk, 8192), 1);
    report("alive_after_errors", matches(chk, 0, 8192));

    if (!hostile) return;
    /* A PRDT entry outside guest RAM, a read with no PRDT at all, a FIS that is not a Register H2D FIS: each
     * must end in an error (no PxCI bit left set forever), and the port must carry on. */
    report("outside_ram", ata(p, 0x25, 0, 0, 1, 0, one((void *)0xF0000000u, 512), 1) != 0);
    report("empty_prdt", ata(p, 0x25, 0, 0, 1, 0, 0, 0) != 0);
    fis_h2d(p, 0, 0x25, 0, 0, 0, 1, 0x40);
    p->ct[0].cfis[0] = 0x34;
    header(p, 0, 0, 0, one(chk, 512), 1);
    report("bad_fis_type", run_slot(p, 0, g_cap) != 0);
    zero(chk, 8192);
    ata(p, 0x25, 0, 0, (uint16_t)(8192 / ss), 0, one(chk, 8192), 1);
    report("alive_after_hostile", matches(chk, 0, 8192));
}

/* --- ATAPI --- */
/* One PACKET command: a 12-byte CDB, data in (DMA or PIO with the byte count limit in LBA 23:8). Returns 0, or
 * the sense (key << 16 | ASC << 8 | ASCQ) REQUEST SENSE gives after a CHECK CONDITION. */
static uint32_t last_tfd;
static uint32_t packet_raw(struct port *p, const uint8_t *cdb, void *data, uint32_t len, int dma)
{
    fis_h2d(p, 0, 0xA0, dma ? 1 : 0, (len > 0xFFFE ? 0xFFFE : len) << 8, 0, 0, 0);
    for (int i = 0; i < 16; i++) p->ct[0].acmd[i] = i < 12 ? cdb[i] : 0;
    header(p, 0, 0, 1, len ? one(data, len) : 0, len ? 1 : 0);
    uint32_t r = run_slot(p, 0, g_cap);
    last_tfd = r;
    return r;
}

static uint8_t sense[18] __attribute__((aligned(4)));
static uint32_t packet(struct port *p, const uint8_t *cdb, void *data, uint32_t len, int dma)
{
    uint32_t r = packet_raw(p, cdb, data, len, dma);
    if (!r) return 0;
    if (r == R_TIMEOUT) return R_TIMEOUT;
    static const uint8_t rs[12] = { 0x03, 0, 0, 0, 18, 0 };
    zero(sense, 18);
    if (packet_raw(p, rs, sense, 18, 0)) return R_TIMEOUT - 1;
    return (uint32_t)(sense[2] & 0xF) << 16 | (uint32_t)sense[12] << 8 | sense[13];
}

static uint8_t cdbuf[2048 * 2] __attribute__((aligned(4096)));

static uint32_t read10(struct port *p, uint32_t lba, uint32_t n, void *to)
{
    uint8_t c[12] = { 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8), (uint8_t)lba, 0, (uint8_t)(n >> 8), (uint8_t)n };
    return packet(p, c, to, n * 2048, 1);
}

static uint32_t le32(const uint8_t *b) { return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24; }
static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* The volume id of the PVD at sector 16 (trailing spaces dropped) into out; 0 when it is not ISO 9660. */
static int volume_id(struct port *p, char *out, uint32_t *result)
{
    zero(cdbuf, 2048);
    *result = read10(p, 16, 1, cdbuf);
    out[0] = 0;
    if (*result || cdbuf[0] != 1 || cdbuf[1] != 'C' || cdbuf[2] != 'D' || cdbuf[3] != '0' || cdbuf[4] != '0' || cdbuf[5] != '1') return 0;
    int n = 32;
    while (n && cdbuf[40 + n - 1] == ' ') n--;
    for (int i = 0; i < n; i++) out[i] = (char)cdbuf[40 + i];
    out[n] = 0;
    return 1;
}

/* TEST UNIT READY until GOOD (up to 10 tries, each CHECK CONDITION answered with REQUEST SENSE): the first
 * sense seen, or 0. */
static uint32_t until_ready(struct port *p, uint32_t *tries)
{
    static const uint8_t tur[12] = { 0 };
    uint32_t first = 0, r;
    for (*tries = 1; (r = packet(p, tur, 0, 0, 0)) != 0 && *tries < 10; (*tries)++)
        if (!first) first = r;
    return first ? first : r;
}

static uint32_t gesn(struct port *p, uint8_t *event, uint8_t *status)
{
    static const uint8_t c[12] = { 0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8, 0 };   /* polled, media class, 8 bytes */
    zero(cdbuf, 8);
    uint32_t r = packet(p, c, cdbuf, 8, 0);
    *event = cdbuf[4] & 0xF;
    *status = cdbuf[5];
    return r;
}

static void cd_tests(struct port *p)
{
    uint16_t id[256];
    fis_h2d(p, 0, 0xA1, 0, 0, 0, 0, 0);
    header(p, 0, 0, 0, one(id, 512), 1);
    report("cd_identify", run_slot(p, 0, g_cap));
    report("cd_identify_atapi", id[0] >> 14 == 2);
    report("cd_identify_type", (id[0] >> 8) & 0x1F);
    report("cd_identify_packet12", (id[0] & 3) == 0);
    char s[48];
    ata_string(s, id, 27, 20); report_str("cd_model", s);

    static const uint8_t inq[12] = { 0x12, 0, 0, 0, 36, 0 };
    zero(cdbuf, 36);
    report("cd_inquiry", packet(p, inq, cdbuf, 36, 0));
    report("cd_inquiry_type", cdbuf[0] & 0x1F);
    report("cd_inquiry_removable", cdbuf[1] >> 7);

    uint32_t tries;
    report_hex("cd_first_sense", until_ready(p, &tries));
    report("cd_tur_tries", tries);
    static const uint8_t tur[12] = { 0 };
    report("cd_ready", packet(p, tur, 0, 0, 0));

    static const uint8_t rc[12] = { 0x25 };
    zero(cdbuf, 8);
    report("cd_read_capacity", packet(p, rc, cdbuf, 8, 0));
    uint32_t sectors = be32(cdbuf) + 1;
    report("cd_sectors", sectors);
    report("cd_block_size", be32(cdbuf + 4));

    char vol[33];
    uint32_t r;
    report("cd_pvd", volume_id(p, vol, &r));
    report("cd_read10", r);
    report_str("cd_volume_id", vol);
    uint8_t root[34];
    for (int i = 0; i < 34; i++) root[i] = cdbuf[156 + i];
    /* READ(12) of the same sector must give the same bytes. */
    uint8_t c12[12] = { 0xA8, 0, 0, 0, 0, 16, 0, 0, 0, 1 };
    uint8_t *second = cdbuf + 2048;
    zero(second, 2048);
    report("cd_read12", packet(p, c12, second, 2048, 1));
    uint32_t same = 1;
    for (int i = 0; i < 2048; i++) if (second[i] != cdbuf[i]) same = 0;   /* cdbuf still holds READ(10)'s PVD */
    report("cd_read12_same", same);

    /* The root directory: records of (length, extent LBA at +2, size at +10, name length at +32, name at +33). */
    uint32_t dir = le32(root + 2), dir_size = le32(root + 10), file = 0, file_size = 0;
    for (uint32_t sec = 0; sec * 2048 < dir_size && sec < 4 && !file; sec++) {
        if (read10(p, dir + sec, 1, cdbuf)) break;
        for (uint32_t at = 0; at < 2048 && cdbuf[at]; at += cdbuf[at]) {
            const uint8_t *rec = cdbuf + at;
            static const char want[] = "HELLO.TXT";
            uint32_t k = 0;
            while (k < 9 && k < rec[32] && rec[33 + k] == (uint8_t)want[k]) k++;
            if (k == 9 && (rec[32] == 9 || rec[33 + 9] == ';')) { file = le32(rec + 2); file_size = le32(rec + 10); break; }
        }
    }
    report("cd_file_found", file != 0);
    report("cd_file_size", file_size);
    if (file) {
        uint32_t h = 2166136261u, left = file_size;
        char head[33];
        uint32_t hn = 0;
        for (uint32_t sec = 0; left; sec++) {
            if ((r = read10(p, file + sec, 1, cdbuf)) != 0) break;
            uint32_t n = left > 2048 ? 2048 : left;
            for (uint32_t i = 0; i < n; i++) {
                h = (h ^ cdbuf[i]) * 16777619u;
                if (hn < 32 && cdbuf[i] >= 0x20 && cdbuf[i] < 0x7F && sec == 0 && i == hn) head[hn++] = (char)cdbuf[i];
            }
            left -= n;
        }
        head[hn] = 0;
        report("cd_file_read", r);
        report_str("cd_file_head", head);
        report_hex("cd_file_fnv", h);
    }

    uint8_t ev, st;
    report("cd_gesn", gesn(p, &ev, &st));
    report_hex("cd_gesn_media_status", st);

    report_hex("cd_read_past_end", read10(p, sectors, 1, cdbuf));
    report("cd_alive_after_error", volume_id(p, vol, &r));

    /* MODE SENSE(10) of the capabilities page (2Ah): the page code comes back after the 8-byte header. */
    static const uint8_t ms[12] = { 0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64, 0 };
    zero(cdbuf, 64);
    report("cd_mode_sense", packet(p, ms, cdbuf, 64, 0));
    report_hex("cd_mode_sense_page", cdbuf[8] & 0x3F);
    /* READ TOC/PMA/ATIP, format 0, LBA form: one data track from LBA 0, then the lead-out at the capacity. */
    static const uint8_t toc[12] = { 0x43, 0, 0, 0, 0, 0, 1, 0, 20, 0 };
    zero(cdbuf, 20);
    report("cd_toc", packet(p, toc, cdbuf, 20, 0));
    report("cd_toc_tracks", cdbuf[2] | (uint32_t)cdbuf[3] << 8);          /* first, last: 1, 1 */
    report_hex("cd_toc_track1_control", cdbuf[5] & 0xF);                   /* 4: data track */
    report("cd_toc_track1_lba", be32(cdbuf + 8));
    report_hex("cd_toc_leadout_track", cdbuf[14]);
    report("cd_toc_leadout_lba", be32(cdbuf + 16));
    /* GET CONFIGURATION, the header alone: the current profile (0008h CD-ROM, 0010h DVD-ROM). */
    static const uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
    zero(cdbuf, 8);
    report("cd_get_configuration", packet(p, gc, cdbuf, 8, 0));
    report_hex("cd_current_profile", (uint32_t)cdbuf[6] << 8 | cdbuf[7]);

    /* PREVENT MEDIUM REMOVAL, then START STOP UNIT with LoEj must fail (ASC 53h: removal prevented); ALLOW, and
     * the eject works: the drive is then empty (02/3A). */
    static const uint8_t prevent[12] = { 0x1E, 0, 0, 0, 1, 0 }, allow[12] = { 0x1E, 0, 0, 0, 0, 0 };
    static const uint8_t eject[12] = { 0x1B, 0, 0, 0, 0x02, 0 };
    report("cd_prevent", packet(p, prevent, 0, 0, 0));
    report_hex("cd_eject_locked_asc", (packet(p, eject, 0, 0, 0) >> 8) & 0xFF);   /* the sense key differs: QEMU says 02 */
    report("cd_allow", packet(p, allow, 0, 0, 0));
    report("cd_eject", packet(p, eject, 0, 0, 0));
    report_hex("cd_after_eject", packet(p, tur, 0, 0, 0) >> 8);
}

/* Polls TEST UNIT READY and GET EVENT STATUS NOTIFICATION, printing each change, until a medium is read after
 * one was seen missing (or watchms passes). */
static void cd_watch(struct port *p, uint32_t watchms)
{
    static const uint8_t tur[12] = { 0 };
    uint32_t last = 0xFFFFFFFFu, seen_empty = 0, elapsed = 0, polls = 0;
    char vol[33];
    report("watch_started", 1);
    while (elapsed < watchms) {
        uint32_t t0 = now();
        uint8_t ev, st;
        if (gesn(p, &ev, &st) == 0 && ev) { report("watch_event", ev); report_hex("watch_event_media_status", st); }
        uint32_t r = packet(p, tur, 0, 0, 0);
        polls++;
        if (r != last) {
            report_hex("watch_sense", r);
            if ((r >> 8) == 0x023A) seen_empty = 1;
            last = r;
            if (r == 0) {
                uint32_t rr;
                if (volume_id(p, vol, &rr)) report_str("watch_volume", vol);
                else report_hex("watch_volume_error", rr);
                if (seen_empty) break;
            }
        }
        delay_ms(20);
        elapsed += since_ms(t0);
    }
    report("watch_polls", polls);
    report("watch_timed_out", elapsed >= watchms);
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    timer_init();
    use_irq = cmdline_uint(mbi, "irq", 0);
    if (use_irq) interrupts_start(on_irq);
    uint32_t slots[4], nslots = 0;
    for (uint32_t slot = 0; slot < 32 && nhbas < 4; slot++) {
        uint32_t idv = pci_read32(0, slot, 0, 0);
        if ((idv & 0xFFFF) == 0xFFFF) continue;
        if ((pci_read32(0, slot, 0, 8) >> 8) != 0x010601) continue;
        uint32_t abar = pci_read32(0, slot, 0, 0x24) & ~0xFu;
        /* memory decode, bus master; with MSI, INTx disabled */
        pci_write32(0, slot, 0, 4, (pci_read32(0, slot, 0, 4) & 0xFFFF) | 0x6 | (use_irq ? 0x400 : 0));
        slots[nslots++] = slot;
        hbas[nhbas++] = abar;
    }
    report("controllers", nhbas);
    if (!nhbas) test_done();
    uint32_t disk = MAX_PORTS, cd = MAX_PORTS;
    for (uint32_t h = 0; h < nhbas; h++) {
        uint32_t abar = hbas[h];
        if (h == 0) {
            report_hex("pci_id", pci_read32(0, slots[h], 0, 0));
            report_hex("class", pci_read32(0, slots[h], 0, 8) >> 8);
            report("bar5_memory", (pci_read32(0, slots[h], 0, 0x24) & 1) == 0);
        }
        mmio_write32(abar + GHC, GHC_AE);
        mmio_write32(abar + GHC, GHC_AE | GHC_HR);
        uint32_t s = now();
        while (mmio_read32(abar + GHC) & GHC_HR) if (since_ms(s) > 1000) break;
        if (h == 0) report("hba_reset_done", !(mmio_read32(abar + GHC) & GHC_HR));
        mmio_write32(abar + GHC, GHC_AE);
        uint32_t cap = mmio_read32(abar + CAP), pi = mmio_read32(abar + PI);
        if (h == 0) {
            g_cap = cap;
            report_hex("version", mmio_read32(abar + VS));
            report("cap_ncq", (cap >> 30) & 1);
            report("cap_slots", ((cap >> 8) & 0x1F) + 1);
            report("cap_64bit", (cap >> 31) & 1);
        }
        if (use_irq) {
            uint32_t msi = pci_find_cap(slots[h], 0x05);
            report("msi_cap", msi != 0);
            if (msi) {
                uint32_t ctl = pci_read32(0, slots[h], 0, msi);
                pci_write32(0, slots[h], 0, msi + 4, 0xFEE00000u);
                if (ctl & (1u << 23)) { pci_write32(0, slots[h], 0, msi + 8, 0); pci_write32(0, slots[h], 0, msi + 12, 0x50); }
                else pci_write32(0, slots[h], 0, msi + 8, 0x50);
                pci_write32(0, slots[h], 0, msi, (ctl & ~(7u << 20)) | (1u << 16));   /* one message, enabled */
            }
        }
        for (uint32_t n = 0; n < 32; n++) {
            if (!(pi & (1u << n))) continue;
            if (!port_init(abar, n, cap)) continue;
            struct port *p = &ports[nports - 1];
            print("ahci: port "); print_dec(n); print(" sig "); print_hex(p->sig); print("\n");
            if (p->sig == SIG_ATA && disk == MAX_PORTS) disk = nports - 1;
            if (p->sig == SIG_ATAPI && cd == MAX_PORTS) cd = nports - 1;
        }
        if (use_irq) mmio_write32(abar + GHC, GHC_AE | GHC_IE);
    }
    report("ports", nports);
    report("disk_found", disk != MAX_PORTS);
    report("cd_found", cd != MAX_PORTS);
    if (cd != MAX_PORTS) report_hex("cd_signature", ports[cd].sig);

    if (cmdline_uint(mbi, "watch", 0) && cd != MAX_PORTS) {
        uint32_t tries;
        report_hex("cd_first_sense", until_ready(&ports[cd], &tries));
        char vol[33];
        uint32_t r;
        if (volume_id(&ports[cd], vol, &r)) report_str("cd_volume_id", vol);
        cd_watch(&ports[cd], cmdline_uint(mbi, "watchms", 60000));
        test_done();
    }
    if (disk != MAX_PORTS) disk_tests(&ports[disk], cmdline_uint(mbi, "ncq", 8), cmdline_uint(mbi, "ncqrounds", 3) ?: 1, cmdline_uint(mbi, "hostile", 0));
    if (cd != MAX_PORTS) cd_tests(&ports[cd]);
    if (use_irq) report("irqs", irqs > 0);
    test_done();
}
