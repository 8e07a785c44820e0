/* Raw x86-64 Linux system calls for the freestanding tools in the test initramfs. They use no libc:
 * glibc programs need GLIBC_TUNABLES on our software-nested hosts, and these must work whatever the
 * environment (the kernel may start them before /init sets anything up). */
#ifndef XHYVE_LINUX_TOOLS_SYSCALL_H
#define XHYVE_LINUX_TOOLS_SYSCALL_H

typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

enum {
    SYS_read = 0, SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_socket = 41, SYS_sendto = 44,
    SYS_recvfrom = 45, SYS_bind = 49, SYS_setsockopt = 54, SYS_exit = 60, SYS_sync = 162, SYS_reboot = 169,
};

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static inline long sys3(long n, long a, long b, long c) { return sys6(n, a, b, c, 0, 0, 0); }

static inline size_t str_len(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

static inline int str_eq(const char *a, const char *b, size_t max)
{
    for (size_t i = 0; i < max; i++) {
        if (a[i] != b[i]) return 0;
        if (!a[i]) return 1;
    }
    return 1;
}

static inline void put(const char *s) { sys3(SYS_write, 1, (long)s, (long)str_len(s)); }

static void __attribute__((noreturn)) quit(int code)
{
    for (;;) sys3(SYS_exit, code, 0, 0);
}

#endif
