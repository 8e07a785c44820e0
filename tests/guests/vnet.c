/* vnet: a virtio-net driver guest with just enough IPv4 to test a network device end to end.
 * Modern virtio-pci only (device 0x1041, or transitional 0x1000 driven through its modern interface),
 * VERSION_1 and MAC negotiated, no MRG_RXBUF (so the 12-byte header and one buffer per frame), queue 0
 * receives, queue 1 sends, everything polled. Modes (multiboot command line):
 *   mode=user echo=PORT      DHCP, ARP for the gateway, a UDP datagram to gateway:PORT and its echo back
 *                            (passt maps the gateway address to the host's loopback).
 *   mode=listen listen=PORT n=N   DHCP, then answer ARP/ICMP and echo N UDP datagrams arriving at PORT.
 *   mode=static ip=A.B.C.D [peer=A.B.C.D] [echo=PORT] [n=N] [pings=P]
 *                            answer ARP, ICMP echo and UDP echo on PORT (default 7) until N UDP datagrams
 *                            and P pings were answered.
 *   mode=blast port=PORT [n=N] [size=BYTES] [ip=A.B.C.D peer=A.B.C.D] [ring=R] [batch=B]
 *                            throughput: DHCP (or the static ip=/peer=, then ARP for the peer), then N UDP datagrams
 *                            of BYTES payload (default 1024, at most 1472: frames stay <= 1514 bytes) to
 *                            gateway-or-peer:PORT as fast as the send ring allows. R (default 128) prebuilt frames
 *                            in R buffers; used buffers are reclaimed in batches and the ring refilled once B (default
 *                            R/4) are free, with one notification per refill (none while the device sets NO_NOTIFY).
 *                            Results: sent=, elapsed_us=, pps=, notifies=, cycles_per_ms=.
 *   mode=sink port=PORT [n=N] [ip=A.B.C.D] [idle=MS] [ring=R]
 *                            throughput: DHCP (or the static ip=), "sinking=PORT", then counts UDP datagrams to PORT
 *                            (answering ARP/ICMP meanwhile) until N arrived, MS (default 1000) pass without one after
 *                            the first, or secs= pass. Results: received=, bytes=, elapsed_us= (first to last, by the
 *                            TSC), pps=, notifies=.
 * Common options: secs=S (how long to wait in listen/static modes, default 60), tsc_mhz=M (skips the PIT
 * calibration of the TSC), nic=K (drive the K-th virtio-net device from 0, in slot order), norx=1 (post no
 * receive buffers: frames sent to the guest must wait in the device, which must not spin or fail). Results: XHYVE-TEST mac=, ip=, gw=, udp_echo=ok, udp_echoed=, icmp_echoed=, ...
 * Every parse of an incoming frame is bounded by the length the device reported and by the lengths in
 * the headers, whichever is smaller. */
#include "lib/guest.h"
#include "lib/virtio.h"

#define QMAX 16            /* queue size of the functional modes */
#define BQMAX 128          /* the most the throughput modes use (ring=) */
#define BUFSZ 2048
#define NETHDR 12          /* virtio_net_hdr with num_buffers: always 12 bytes with VERSION_1 */
#define F_MAC (1u << 5)
#define F_STATUS (1u << 16)

void *memset(void *d, int c, uint32_t n) { uint8_t *p = d; while (n--) *p++ = (uint8_t)c; return d; }
void *memcpy(void *d, const void *s, uint32_t n) { uint8_t *p = d; const uint8_t *q = s; while (n--) *p++ = *q++; return d; }
static int memeq(const void *a, const void *b, uint32_t n)
{
    const uint8_t *p = a, *q = b;
    for (uint32_t i = 0; i < n; i++) if (p[i] != q[i]) return 0;
    return 1;
}

static inline void barrier(void) { __asm__ volatile("lock; addl $0, (%%esp)" ::: "memory"); }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return (uint64_t)hi << 32 | lo; }

/* ---- virtio-pci (modern) ---- */

struct queue {
    uint16_t size, avail_idx, used_idx, index;
    volatile struct vring_desc *desc;
    volatile uint16_t *avail;
    volatile uint8_t *used;
    uint32_t notify;
};

static struct vdev dev;
static struct queue rxq, txq;
static uint8_t qmem[2][8192] __attribute__((aligned(4096)));
static uint8_t rxbuf[BQMAX][BUFSZ] __attribute__((aligned(16)));
static uint8_t txpool[BQMAX][BUFSZ] __attribute__((aligned(16)));
static uint8_t txbuf[BUFSZ] __attribute__((aligned(16)));

static void c8(uint32_t off, uint8_t v) { *(volatile uint8_t *)(dev.common + off) = v; }
static void c16(uint32_t off, uint16_t v) { *(volatile uint16_t *)(dev.common + off) = v; }
static void c32(uint32_t off, uint32_t v) { *(volatile uint32_t *)(dev.common + off) = v; }
static uint8_t r8(uint32_t off) { return *(volatile uint8_t *)(dev.common + off); }
static uint16_t r16(uint32_t off) { return *(volatile uint16_t *)(dev.common + off); }
static uint32_t r32(uint32_t off) { return *(volatile uint32_t *)(dev.common + off); }

static int queue_setup(struct queue *q, uint16_t index, uint8_t *mem, uint16_t qmax)
{
    c16(0x16, index);
    uint16_t size = r16(0x18);
    if (!size) return 0;
    if (size > qmax) { size = qmax; c16(0x18, size); }
    uint32_t s = qmax < 16 ? 16 : qmax;                             /* room for qmax entries; 16 gives 256/512 */
    memset(mem, 0, 8192);
    q->index = index; q->size = size; q->avail_idx = q->used_idx = 0;
    q->desc = (volatile struct vring_desc *)mem;                    /* 16 * s bytes */
    q->avail = (volatile uint16_t *)(mem + 16 * s);                 /* 6 + 2 * s bytes */
    q->used = mem + 32 * s;                                         /* 6 + 8 * s bytes, 4-aligned */
    q->notify = dev.notify + r16(0x1E) * dev.notify_mult;
    c16(0x1A, 0xFFFF);                                              /* no MSI-X vector: polled */
    c32(0x20, (uint32_t)q->desc); c32(0x24, 0);
    c32(0x28, (uint32_t)q->avail); c32(0x2C, 0);
    c32(0x30, (uint32_t)q->used); c32(0x34, 0);
    c16(0x1C, 1);
    return 1;
}

static void queue_publish(struct queue *q)
{
    barrier();
    q->avail[1] = q->avail_idx;
    barrier();
    *(volatile uint16_t *)q->notify = q->index;
}

/* The same, but without the notification while the device says it does not need one (used flags NO_NOTIFY);
 * returns whether it notified. */
static int queue_publish_lazy(struct queue *q)
{
    barrier();
    q->avail[1] = q->avail_idx;
    barrier();
    if (*(volatile uint16_t *)q->used & 1) return 0;
    *(volatile uint16_t *)q->notify = q->index;
    return 1;
}

static void queue_put(struct queue *q, uint16_t head) { q->avail[2 + (q->avail_idx++ % q->size)] = head; }

static int queue_poll(struct queue *q, uint32_t *head, uint32_t *len)
{
    uint16_t idx = *(volatile uint16_t *)(q->used + 2);
    if (idx == q->used_idx) return 0;
    barrier();
    volatile uint32_t *e = (volatile uint32_t *)(q->used + 4 + 8 * (q->used_idx % q->size));
    *head = e[0];
    *len = e[1];
    q->used_idx++;
    return 1;
}

/* ---- time ---- */

static uint64_t ticks_per_ms = 2000000;

static void calibrate_tsc(uint32_t mhz)
{
    if (mhz) { ticks_per_ms = (uint64_t)mhz * 1000; return; }
    /* PIT channel 2, mode 0, 11932 counts = 10 ms; its output shows in port 0x61 bit 5. */
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);
    outb(0x43, 0xB0);
    outb(0x42, 11932 & 0xFF);
    outb(0x42, 11932 >> 8);
    uint64_t t0 = rdtsc();
    uint32_t i;
    for (i = 0; i < 10000000 && !(inb(0x61) & 0x20); i++) ;
    uint64_t t = rdtsc() - t0;
    if (i < 10000000 && t > 1000000) ticks_per_ms = t / 10;   /* else keep the 2 GHz guess */
}

static uint64_t deadline_ms(uint32_t ms) { return rdtsc() + ms * ticks_per_ms; }
static int expired(uint64_t deadline) { return rdtsc() >= deadline; }

/* ---- byte order and checksums ---- */

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t sum)
{
    for (uint32_t i = 0; i + 1 < n; i += 2) sum += get16(p + i);
    if (n & 1) sum += (uint32_t)p[n - 1] << 8;
    return sum;
}
static uint16_t fold(uint32_t sum)
{
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

/* ---- network state ---- */

#define ETH_ARP 0x0806
#define ETH_IP 0x0800
#define MY_PORT 40000

static const uint8_t bcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
static uint8_t my_mac[6], gw_mac[6];
static uint32_t my_ip, gw_ip, netmask, dhcp_server, offered_ip, xid = 0x58485956;
static volatile int have_gw_mac, echo_ok;
static int dhcp_state;                         /* 0 none, 2 offer seen, 5 ack seen */
static uint16_t listen_port, echo_port;
static uint32_t udp_echoed, icmp_echoed, arp_replied, frames_in, frames_bad, frames_out;
static const char echo_payload[] = "xhyve-vnet-echo";

static void send_frame(uint32_t len)
{
    memset(txbuf, 0, NETHDR);
    txq.desc[0].addr = (uint32_t)txbuf;
    txq.desc[0].len = NETHDR + len;
    txq.desc[0].flags = 0;
    txq.desc[0].next = 0;
    queue_put(&txq, 0);
    queue_publish(&txq);
    uint32_t head, used;
    uint64_t until = deadline_ms(1000);
    while (!queue_poll(&txq, &head, &used) && !expired(until)) __asm__ volatile("pause");
    frames_out++;
}

static uint8_t *eth(const uint8_t *dst, uint16_t type)
{
    uint8_t *f = txbuf + NETHDR;
    memcpy(f, dst, 6);
    memcpy(f + 6, my_mac, 6);
    put16(f + 12, type);
    return f + 14;
}

static void ipv4_hdr(uint8_t *p, uint32_t src, uint32_t dst, uint8_t proto, uint32_t payload)
{
    static uint16_t id;
    p[0] = 0x45; p[1] = 0;
    put16(p + 2, (uint16_t)(20 + payload));
    put16(p + 4, ++id);
    put16(p + 6, 0x4000);                      /* don't fragment */
    p[8] = 64; p[9] = proto;
    put16(p + 10, 0);
    put32(p + 12, src); put32(p + 16, dst);
    put16(p + 10, fold(sum16(p, 20, 0)));
}

/* Lays a UDP datagram out in txbuf (after the virtio header); returns the frame's length. max: the largest payload. */
static uint32_t build_udp(const uint8_t *dst_mac, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                          const uint8_t *data, uint32_t len, uint32_t max)
{
    if (len > max) len = max;
    uint8_t *ip = eth(dst_mac, ETH_IP), *udp = ip + 20;
    ipv4_hdr(ip, src, dst, 17, 8 + len);
    put16(udp, sport); put16(udp + 2, dport); put16(udp + 4, (uint16_t)(8 + len)); put16(udp + 6, 0);
    memcpy(udp + 8, data, len);
    uint32_t sum = sum16(ip + 12, 8, 17 + 8 + len);              /* pseudo-header: addresses, protocol, length */
    uint16_t c = fold(sum16(udp, 8 + len, sum));
    put16(udp + 6, c ? c : 0xFFFF);
    return 14 + 20 + 8 + len;
}

static void send_udp(const uint8_t *dst_mac, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                     const uint8_t *data, uint32_t len)
{
    send_frame(build_udp(dst_mac, src, dst, sport, dport, data, len, 1400));
}

static void send_arp(uint16_t op, const uint8_t *dst_mac, const uint8_t *tha, uint32_t tpa)
{
    uint8_t *a = eth(dst_mac, ETH_ARP);
    put16(a, 1); put16(a + 2, ETH_IP); a[4] = 6; a[5] = 4; put16(a + 6, op);
    memcpy(a + 8, my_mac, 6); put32(a + 14, my_ip);
    memcpy(a + 18, tha, 6); put32(a + 24, tpa);
    send_frame(14 + 28);
}

/* ---- DHCP ---- */

static void send_dhcp(uint8_t type)
{
    static uint8_t m[300];
    memset(m, 0, sizeof m);
    m[0] = 1; m[1] = 1; m[2] = 6;
    put32(m + 4, xid);
    put16(m + 10, 0x8000);                     /* broadcast the answer: we have no address yet */
    memcpy(m + 28, my_mac, 6);
    put32(m + 236, 0x63825363);
    uint32_t o = 240;
    m[o++] = 53; m[o++] = 1; m[o++] = type;
    if (type == 3) {
        m[o++] = 50; m[o++] = 4; put32(m + o, offered_ip); o += 4;
        m[o++] = 54; m[o++] = 4; put32(m + o, dhcp_server); o += 4;
    }
    m[o++] = 55; m[o++] = 3; m[o++] = 1; m[o++] = 3; m[o++] = 6;
    m[o++] = 255;
    send_udp(bcast, 0, 0xFFFFFFFF, 68, 67, m, o < sizeof m ? sizeof m : o);
}

static void on_dhcp(const uint8_t *m, uint32_t len)
{
    if (len < 240 || m[0] != 2 || get32(m + 4) != xid || get32(m + 236) != 0x63825363) return;
    uint32_t type = 0, server = 0, router = 0, mask = 0;
    for (uint32_t i = 240; i < len;) {
        uint8_t code = m[i];
        if (code == 255) break;
        if (code == 0) { i++; continue; }
        if (i + 1 >= len) break;
        uint32_t l = m[i + 1];
        if (i + 2 + l > len) break;
        const uint8_t *v = m + i + 2;
        if (code == 53 && l >= 1) type = v[0];
        if (code == 54 && l >= 4) server = get32(v);
        if (code == 3 && l >= 4) router = get32(v);
        if (code == 1 && l >= 4) mask = get32(v);
        i += 2 + l;
    }
    if (type == 2 && dhcp_state == 0) {
        offered_ip = get32(m + 16);
        dhcp_server = server;
        dhcp_state = 2;
    } else if (type == 5 && dhcp_state == 2) {
        my_ip = get32(m + 16);
        gw_ip = router ? router : server;
        netmask = mask;
        dhcp_state = 5;
    }
}

/* ---- receive path ---- */

static void on_udp(const uint8_t *src_mac, const uint8_t *ip, uint32_t iplen)
{
    if (iplen < 20 + 8) return;
    const uint8_t *udp = ip + 20;
    uint32_t ulen = get16(udp + 4);
    if (ulen < 8 || ulen > iplen - 20) { frames_bad++; return; }
    uint16_t sport = get16(udp), dport = get16(udp + 2);
    uint32_t src = get32(ip + 12), dst = get32(ip + 16);
    const uint8_t *data = udp + 8;
    uint32_t dlen = ulen - 8;
    if (dport == 68 && sport == 67) { on_dhcp(data, dlen); return; }
    if (!my_ip || dst != my_ip) return;
    if (echo_port && !listen_port && dport == MY_PORT && src == gw_ip && sport == echo_port) {
        if (dlen == sizeof echo_payload - 1 && memeq(data, echo_payload, dlen)) echo_ok = 1;
        return;
    }
    if (listen_port && dport == listen_port) {
        send_udp(src_mac, my_ip, src, dport, sport, data, dlen);
        udp_echoed++;
    }
}

static void on_icmp(const uint8_t *src_mac, const uint8_t *ip, uint32_t iplen)
{
    if (iplen < 20 + 8 || ip[20] != 8 || get32(ip + 16) != my_ip || iplen - 20 > 1400) return;
    uint32_t n = iplen - 20;
    uint8_t *out = eth(src_mac, ETH_IP);
    ipv4_hdr(out, my_ip, get32(ip + 12), 1, n);
    memcpy(out + 20, ip + 20, n);
    out[20] = 0; out[21] = 0;
    put16(out + 22, 0);
    put16(out + 22, fold(sum16(out + 20, n, 0)));
    send_frame(14 + 20 + n);
    icmp_echoed++;
}

static void on_arp(const uint8_t *a, uint32_t len)
{
    if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4) return;
    uint16_t op = get16(a + 6);
    uint32_t spa = get32(a + 14), tpa = get32(a + 24);
    if (op == 1 && my_ip && tpa == my_ip) {
        send_arp(2, a + 8, a + 8, spa);
        arp_replied++;
    }
    if (gw_ip && spa == gw_ip && (op == 2 || tpa == my_ip)) {
        memcpy(gw_mac, a + 8, 6);
        have_gw_mac = 1;
    }
}

static void on_frame(const uint8_t *f, uint32_t len)
{
    frames_in++;
    if (len < 14) { frames_bad++; return; }
    if (!memeq(f, my_mac, 6) && !memeq(f, bcast, 6)) return;
    uint16_t type = get16(f + 12);
    const uint8_t *p = f + 14;
    uint32_t plen = len - 14;
    if (type == ETH_ARP) { on_arp(p, plen); return; }
    if (type != ETH_IP) return;
    if (plen < 20 || p[0] != 0x45) { frames_bad++; return; }   /* no IP options in this guest's world */
    uint32_t total = get16(p + 2);
    if (total < 20 || total > plen || fold(sum16(p, 20, 0)) != 0) { frames_bad++; return; }
    if (get16(p + 6) & 0x3FFF) return;                           /* fragments: not ours to reassemble */
    if (p[9] == 17) on_udp(f + 6, p, total);
    else if (p[9] == 1) on_icmp(f + 6, p, total);
}

static void rx_post(uint16_t i)
{
    rxq.desc[i].addr = (uint32_t)rxbuf[i];
    rxq.desc[i].len = BUFSZ;
    rxq.desc[i].flags = VRING_DESC_F_WRITE;
    rxq.desc[i].next = 0;
    queue_put(&rxq, i);
}

/* Handles every frame the device has delivered; returns how many. */
static uint32_t pump(void)
{
    uint32_t head, len, n = 0;
    while (queue_poll(&rxq, &head, &len)) {
        n++;
        if (head >= rxq.size) { frames_bad++; continue; }      /* the device's mistake: drop, don't repost */
        if (len > BUFSZ) len = BUFSZ;
        if (len >= NETHDR) on_frame(rxbuf[head] + NETHDR, len - NETHDR);
        else frames_bad++;
        rx_post((uint16_t)head);
    }
    if (n) queue_publish(&rxq);
    return n;
}

/* Pumps until *flag becomes nonzero or ms pass; returns the flag. */
static int wait_flag(volatile int *flag, uint32_t ms)
{
    uint64_t until = deadline_ms(ms);
    while (!*flag && !expired(until)) if (!pump()) __asm__ volatile("pause");
    return *flag;
}

/* ---- command line ---- */

static const char *cmdline_value(const struct multiboot_info *mbi, const char *key)
{
    if (!(mbi->flags & (1u << 2)) || !mbi->cmdline) return 0;
    const char *s = (const char *)mbi->cmdline;
    while (*s) {
        const char *k = key, *p = s;
        while (*k && *p == *k) { k++; p++; }
        if (!*k && *p == '=') return p + 1;
        while (*s && *s != ' ') s++;
        while (*s == ' ') s++;
    }
    return 0;
}

static int word_is(const char *v, const char *w)
{
    if (!v) return 0;
    while (*w && *v == *w) { v++; w++; }
    return !*w && (!*v || *v == ' ');
}

static uint32_t cmdline_ip(const struct multiboot_info *mbi, const char *key)
{
    const char *v = cmdline_value(mbi, key);
    uint32_t ip = 0;
    if (!v) return 0;
    for (int part = 0; part < 4; part++) {
        uint32_t x = 0;
        int digits = 0;
        for (; *v >= '0' && *v <= '9' && digits < 4; v++, digits++) x = x * 10 + (uint32_t)(*v - '0');
        if (!digits || x > 255) return 0;
        ip = ip << 8 | x;
        if (part < 3) { if (*v != '.') return 0; v++; }
    }
    return ip;
}

/* ---- reporting ---- */

static void report_ip(const char *key, uint32_t ip)
{
    char b[16], *p = b;
    for (int i = 3; i >= 0; i--) {
        uint32_t x = (ip >> (8 * i)) & 0xFF;
        if (x >= 100) *p++ = (char)('0' + x / 100);
        if (x >= 10) *p++ = (char)('0' + x / 10 % 10);
        *p++ = (char)('0' + x % 10);
        if (i) *p++ = '.';
    }
    *p = 0;
    report_str(key, b);
}

static void report_mac(const char *key, const uint8_t *m)
{
    static const char hex[] = "0123456789abcdef";
    char b[18];
    for (int i = 0; i < 6; i++) {
        b[3 * i] = hex[m[i] >> 4]; b[3 * i + 1] = hex[m[i] & 15]; b[3 * i + 2] = i < 5 ? ':' : 0;
    }
    report_str(key, b);
}

static void report_ms(const char *key, uint64_t since)
{
    report(key, (uint32_t)((rdtsc() - since) / ticks_per_ms));
}

static void finish(void)
{
    report("frames_in", frames_in);
    report("frames_out", frames_out);
    report("frames_bad", frames_bad);
    test_done();
}

static int dhcp(void)
{
    uint64_t t0 = rdtsc();
    for (int attempt = 0; attempt < 4 && dhcp_state != 5; attempt++) {
        dhcp_state = 0;
        send_dhcp(1);
        uint64_t until = deadline_ms(2000);
        while (dhcp_state != 2 && !expired(until)) if (!pump()) __asm__ volatile("pause");
        if (dhcp_state != 2) continue;
        send_dhcp(3);
        until = deadline_ms(2000);
        while (dhcp_state != 5 && !expired(until)) if (!pump()) __asm__ volatile("pause");
    }
    report("dhcp", dhcp_state == 5);
    if (dhcp_state != 5) return 0;
    report_ms("dhcp_ms", t0);
    report_ip("ip", my_ip);
    report_ip("gw", gw_ip);
    report_ip("mask", netmask);
    report_ip("dhcp_server", dhcp_server);
    return 1;
}

static int arp_gateway(void)
{
    static const uint8_t zero[6];
    for (int attempt = 0; attempt < 5 && !have_gw_mac; attempt++) {
        send_arp(1, bcast, zero, gw_ip);
        wait_flag(&have_gw_mac, 1000);
    }
    report("gw_arp", have_gw_mac);
    if (have_gw_mac) report_mac("gw_mac", gw_mac);
    return have_gw_mac;
}

/* Serves ARP, ICMP echo and UDP echo on listen_port until `want_udp` datagrams and `want_icmp` pings were
 * answered or `secs` pass. */
static void serve(uint32_t want_udp, uint32_t want_icmp, uint32_t secs)
{
    report("listening", listen_port);
    uint64_t until = deadline_ms(secs * 1000);
    while ((udp_echoed < want_udp || icmp_echoed < want_icmp) && !expired(until)) if (!pump()) __asm__ volatile("pause");
    report("udp_echoed", udp_echoed);
    report("icmp_echoed", icmp_echoed);
    report("arp_replied", arp_replied);
}

/* ---- throughput modes ---- */

static void report_rate(uint32_t count, uint64_t bytes, uint64_t cycles)
{
    uint64_t us = cycles * 1000 / ticks_per_ms;
    report("elapsed_us", (uint32_t)us);
    report("pps", us ? (uint32_t)((uint64_t)count * 1000000 / us) : 0);
    report("kbit_s", us ? (uint32_t)(bytes * 8000 / us) : 0);
}

/* Sends n datagrams of size payload bytes to gw_ip:port, keeping the send ring full: every buffer holds the same
 * prebuilt frame, used buffers are reclaimed as the device returns them, and the ring is refilled (one publish, one
 * notification at most) once batch of them are free. */
static void blast(uint16_t port, uint32_t n, uint32_t size, uint32_t batch, uint32_t secs)
{
    static uint8_t payload[1472];
    static uint16_t free_heads[BQMAX];
    if (size > sizeof payload) size = sizeof payload;
    if (batch < 1) batch = 1;
    if (batch > txq.size) batch = txq.size;
    for (uint32_t i = 0; i < size; i++) payload[i] = (uint8_t)('a' + i % 26);
    uint32_t flen = build_udp(gw_mac, my_ip, gw_ip, MY_PORT, port, payload, size, sizeof payload);
    memset(txbuf, 0, NETHDR);
    for (uint16_t i = 0; i < txq.size; i++) {
        memcpy(txpool[i], txbuf, NETHDR + flen);
        txq.desc[i].addr = (uint32_t)txpool[i];
        txq.desc[i].len = NETHDR + flen;
        txq.desc[i].flags = 0;
        txq.desc[i].next = 0;
        free_heads[i] = i;
    }
    txq.avail[0] = 1;                                            /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
    uint32_t nfree = txq.size, queued = 0, done = 0, notifies = 0;
    report("blasting", port);
    uint64_t t0 = rdtsc(), until = deadline_ms(secs * 1000);
    while (done < n) {
        uint32_t head, len;
        while (queue_poll(&txq, &head, &len)) {
            if (head < txq.size) free_heads[nfree++] = (uint16_t)head;
            done++;
        }
        uint32_t left = n - queued;
        if (left && nfree >= (left < batch ? left : batch)) {
            while (nfree && queued < n) { queue_put(&txq, free_heads[--nfree]); queued++; }
            notifies += (uint32_t)queue_publish_lazy(&txq);
        } else {
            if (expired(until)) break;
            __asm__ volatile("pause");
        }
    }
    uint64_t cycles = rdtsc() - t0;
    frames_out += done;
    report("sent", done);
    report("queued", queued);
    report("notifies", notifies);
    report("cycles_per_ms", (uint32_t)ticks_per_ms);
    report_rate(done, (uint64_t)done * size, cycles);
}

/* Counts UDP datagrams to port (other frames go through the usual parser, so ARP and ping are answered). The
 * descriptors keep pointing at their own buffers, so a buffer goes back with one ring entry; the TSC is read once
 * per batch of frames taken from the ring: first is the start of the first batch with a datagram, last the end of
 * the last one. */
static void sink(uint16_t port, uint32_t n, uint32_t idle_ms, uint32_t secs)
{
    uint32_t count = 0, notifies = 0;
    uint64_t bytes = 0, first = 0, last = 0, idle = (uint64_t)idle_ms * ticks_per_ms;
    rxq.avail[0] = 1;                                            /* VRING_AVAIL_F_NO_INTERRUPT: we poll */
    report("sinking", port);
    uint64_t until = deadline_ms(secs * 1000);
    while (count < n) {
        uint32_t head, len, got = 0, before = count;
        uint64_t start = rdtsc();
        while (queue_poll(&rxq, &head, &len)) {
            got++;
            if (head >= rxq.size) { frames_bad++; continue; }
            if (len > BUFSZ) len = BUFSZ;
            const uint8_t *f = rxbuf[head] + NETHDR;
            uint32_t flen = len >= NETHDR ? len - NETHDR : 0;
            if (flen >= 14 + 20 + 8 && f[12] == 0x08 && f[13] == 0 && f[14] == 0x45 && f[14 + 9] == 17
                && get16(f + 14 + 20 + 2) == port && get16(f + 14 + 20 + 4) >= 8) {
                count++;
                bytes += get16(f + 14 + 20 + 4) - 8;
            } else if (flen) on_frame(f, flen);
            else frames_bad++;
            queue_put(&rxq, (uint16_t)head);
        }
        if (got) {
            notifies += (uint32_t)queue_publish_lazy(&rxq);
            if (count != before) { if (!before) first = start; last = rdtsc(); }
            continue;
        }
        if ((count && start - last > idle) || start >= until) break;
        __asm__ volatile("pause");
    }
    frames_in += count;
    report("received", count);
    report("bytes", (uint32_t)bytes);
    report("notifies", notifies);
    report("cycles_per_ms", (uint32_t)ticks_per_ms);
    report_rate(count, bytes, last - first);
}

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic;
    serial_init();
    calibrate_tsc(cmdline_uint(mbi, "tsc_mhz", 0));
    report("tsc_khz", (uint32_t)ticks_per_ms);
    const char *mode = cmdline_value(mbi, "mode");
    int user = word_is(mode, "user"), listen = word_is(mode, "listen"), stat = word_is(mode, "static");
    if (!mode) { listen = cmdline_value(mbi, "listen") != 0; stat = !listen && cmdline_value(mbi, "ip") != 0; user = !listen && !stat; }

    int found = vdev_find_nth(&dev, 1, 0x1000, 0, (int)cmdline_uint(mbi, "nic", 0));
    report("found", found);
    if (!found || !dev.common || !dev.notify || !dev.devcfg) { report("modern", 0); test_done(); }
    report_hex("device_id", pci_read32(0, dev.slot, 0, 0) >> 16);

    /* Reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK, queues, DRIVER_OK. */
    c8(0x14, 0);
    for (int i = 0; i < 1000 && r8(0x14); i++) ;
    c8(0x14, 1); c8(0x14, 1 | 2);
    c32(0x00, 0); uint32_t lo = r32(0x04) & (F_MAC | F_STATUS);
    c32(0x00, 1); uint32_t hi = r32(0x04) & VIRTIO_F_VERSION_1_HI;
    c32(0x08, 0); c32(0x0C, lo);
    c32(0x08, 1); c32(0x0C, hi);
    c8(0x14, 1 | 2 | 8);
    if (!(r8(0x14) & 8) || !hi) { report_hex("status", r8(0x14)); test_done(); }
    report("queues", r16(0x12));
    int bench = word_is(mode, "blast") || word_is(mode, "sink");
    uint32_t qmax = bench ? cmdline_uint(mbi, "ring", BQMAX) : QMAX;
    if (qmax < 2) qmax = 2;
    if (qmax > BQMAX) qmax = BQMAX;
    if (!queue_setup(&rxq, 0, qmem[0], (uint16_t)qmax) || !queue_setup(&txq, 1, qmem[1], (uint16_t)qmax)) { report("queue_setup", 0); test_done(); }
    int norx = cmdline_uint(mbi, "norx", 0) != 0;
    if (!norx) for (uint16_t i = 0; i < rxq.size; i++) rx_post(i);
    c8(0x14, 1 | 2 | 4 | 8);
    report_hex("status", r8(0x14));
    if (!norx) queue_publish(&rxq);
    report("slot", dev.slot);

    if (lo & F_MAC) for (int i = 0; i < 6; i++) my_mac[i] = *(volatile uint8_t *)(dev.devcfg + i);
    else { static const uint8_t fallback[6] = { 0x02, 0, 0, 0x58, 0x48, 0x01 }; memcpy(my_mac, fallback, 6); }
    report_mac("mac", my_mac);
    if (lo & F_STATUS) report("link_up", *(volatile uint16_t *)(dev.devcfg + 6) & 1);
    xid ^= get32(my_mac + 2);

    uint32_t secs = cmdline_uint(mbi, "secs", 60);
    if (user) {
        echo_port = (uint16_t)cmdline_uint(mbi, "echo", 7);
        if (!dhcp() || !arp_gateway()) finish();
        uint64_t t0 = rdtsc();
        for (int attempt = 0; attempt < 5 && !echo_ok; attempt++) {
            send_udp(gw_mac, my_ip, gw_ip, MY_PORT, echo_port, (const uint8_t *)echo_payload, sizeof echo_payload - 1);
            wait_flag(&echo_ok, 1000);
        }
        report_str("udp_echo", echo_ok ? "ok" : "fail");
        if (echo_ok) report_ms("udp_echo_ms", t0);
    } else if (listen) {
        listen_port = (uint16_t)cmdline_uint(mbi, "listen", 7);
        if (!dhcp()) finish();
        serve(cmdline_uint(mbi, "n", 1), 0, secs);
    } else if (stat) {
        my_ip = cmdline_ip(mbi, "ip");
        gw_ip = cmdline_ip(mbi, "peer");
        listen_port = (uint16_t)cmdline_uint(mbi, "echo", 7);
        report_ip("ip", my_ip);
        if (!my_ip) finish();
        if (gw_ip) {   /* tell the peer who we are (gratuitous ARP) and learn its MAC */
            static const uint8_t zero[6];
            send_arp(1, bcast, zero, my_ip);
            arp_gateway();
        }
        serve(cmdline_uint(mbi, "n", 1), cmdline_uint(mbi, "pings", 3), secs);
    } else if (bench) {
        uint16_t port = (uint16_t)cmdline_uint(mbi, "port", 5001);
        my_ip = cmdline_ip(mbi, "ip");
        if (my_ip) report_ip("ip", my_ip);
        else if (!dhcp()) finish();
        if (word_is(mode, "blast")) {
            uint32_t peer = cmdline_ip(mbi, "peer");
            if (my_ip && peer) gw_ip = peer;
            if (!gw_ip || !arp_gateway()) finish();
            blast(port, cmdline_uint(mbi, "n", 10000), cmdline_uint(mbi, "size", 1024),
                  cmdline_uint(mbi, "batch", txq.size / 4), secs);
        } else {
            sink(port, cmdline_uint(mbi, "n", 0xFFFFFFFF), cmdline_uint(mbi, "idle", 1000), secs);
        }
    }
    finish();
}
