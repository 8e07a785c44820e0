/* udpecho: one UDP round trip, for the network tests (busybox's small nc has no UDP mode).
 * Usage: udpecho IPV4 PORT MESSAGE
 * Sends MESSAGE to IPV4:PORT, up to 5 times 3 s apart, until a datagram comes back; prints that
 * datagram and a newline and exits 0. Exits 1 when nothing came back, 2 on a bad argument. */
#include "syscall.h"

enum { AF_INET = 2, SOCK_DGRAM = 2, SOL_SOCKET = 1, SO_RCVTIMEO = 20 };

struct sockaddr_in { u16 family; u16 port; u32 addr; u8 zero[8]; };
struct timeval { long sec; long usec; };

static u8 reply[2048];

/* A decimal number up to max, followed by the character end; returns where end is. */
static const char *number(const char *s, u32 max, u32 *out, char end)
{
    u32 v = 0;
    const char *start = s;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (u32)(*s++ - '0');
        if (v > max) return 0;
    }
    if (s == start || *s != end) return 0;
    *out = v;
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 4) { put("usage: udpecho IPV4 PORT MESSAGE\n"); return 2; }
    struct sockaddr_in to = { AF_INET, 0, 0, {0} };
    const char *s = argv[1];
    for (int i = 0; i < 4; i++) {
        u32 octet;
        if (!(s = number(s, 255, &octet, i < 3 ? '.' : '\0'))) { put("udpecho: bad IPv4 address\n"); return 2; }
        to.addr |= octet << (8 * i); /* network order: the first octet first in memory */
        if (i < 3) s++;
    }
    u32 port;
    if (!number(argv[2], 65535, &port, '\0') || port == 0) { put("udpecho: bad port\n"); return 2; }
    to.port = (u16)((port >> 8) | ((port & 0xff) << 8));

    long fd = sys3(SYS_socket, AF_INET, SOCK_DGRAM, 0);
    struct timeval wait = { 3, 0 };
    if (fd < 0 || sys6(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVTIMEO, (long)&wait, sizeof(wait), 0) < 0) {
        put("udpecho: no UDP socket\n");
        return 1;
    }
    size_t len = str_len(argv[3]);
    for (int attempt = 0; attempt < 5; attempt++) {
        if (sys6(SYS_sendto, fd, (long)argv[3], (long)len, 0, (long)&to, sizeof(to)) < 0) continue;
        long n = sys6(SYS_recvfrom, fd, (long)reply, sizeof(reply) - 1, 0, 0, 0);
        if (n <= 0) continue;
        reply[n] = '\n';
        sys3(SYS_write, 1, (long)reply, n + 1);
        return 0;
    }
    put("udpecho: no reply\n");
    return 1;
}

void __attribute__((noreturn, used)) start_c(long *stack)
{
    quit(main((int)stack[0], (char **)(stack + 1)));
}

__asm__(".global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
