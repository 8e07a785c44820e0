/* powerbtn: what acpid does for a power button, for a kernel without evdev. It joins the ACPI
 * generic-netlink multicast group ("acpi_event"/"acpi_mc_group"), and on a "button/power" event
 * prints a marker, syncs and powers the machine off (ACPI S5). With an argument it only prints the
 * marker and exits, so a test can watch for the event without powering off.
 * Output: "XHYVE-LINUX powerbtn=listening", then "XHYVE-LINUX powerbtn=button/power". */
#include "syscall.h"

enum { AF_NETLINK = 16, SOCK_RAW = 3, NETLINK_GENERIC = 16, SOL_NETLINK = 270, NETLINK_ADD_MEMBERSHIP = 1 };
enum { GENL_ID_CTRL = 0x10, CTRL_CMD_GETFAMILY = 3, CTRL_ATTR_FAMILY_NAME = 2, CTRL_ATTR_MCAST_GROUPS = 7,
       CTRL_ATTR_MCAST_GRP_NAME = 1, CTRL_ATTR_MCAST_GRP_ID = 2, NLM_F_REQUEST = 1, NLMSG_ERROR = 2 };
enum { ACPI_GENL_ATTR_EVENT = 1 };

struct sockaddr_nl { u16 family; u16 pad; u32 pid; u32 groups; };
struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; };
struct genlmsghdr { u8 cmd; u8 version; u16 reserved; };
struct nlattr { u16 len; u16 type; };
/* include/acpi/acpi_bus.h: the payload of an ACPI_GENL_ATTR_EVENT attribute. */
struct acpi_genl_event { char device_class[20]; char bus_id[15]; u32 type; u32 data; } __attribute__((packed));

#define ALIGN4(n) (((n) + 3u) & ~3u)

static u8 buffer[8192] __attribute__((aligned(8)));

/* Finds the multicast group id named group inside a CTRL_ATTR_MCAST_GROUPS attribute. */
static long find_group(const u8 *p, size_t len, const char *group)
{
    for (size_t off = 0; off + sizeof(struct nlattr) <= len;) {
        const struct nlattr *entry = (const void *)(p + off);
        if (entry->len < sizeof(struct nlattr) || off + entry->len > len) return -1;
        long id = -1;
        int named = 0;
        for (size_t in = sizeof(struct nlattr); in + sizeof(struct nlattr) <= entry->len;) {
            const struct nlattr *a = (const void *)(p + off + in);
            if (a->len < sizeof(struct nlattr) || in + a->len > entry->len) return -1;
            const u8 *value = (const u8 *)a + sizeof(struct nlattr);
            if (a->type == CTRL_ATTR_MCAST_GRP_NAME) named = str_eq((const char *)value, group, a->len - sizeof(struct nlattr));
            if (a->type == CTRL_ATTR_MCAST_GRP_ID && a->len >= sizeof(struct nlattr) + 4) id = *(const u32 *)value;
            in += ALIGN4(a->len);
        }
        if (named) return id;
        off += ALIGN4(entry->len);
    }
    return -1;
}

static long resolve_group(int fd)
{
    struct { struct nlmsghdr n; struct genlmsghdr g; struct nlattr a; char name[12]; } request = {
        .n = { sizeof(request), GENL_ID_CTRL, NLM_F_REQUEST, 1, 0 },
        .g = { CTRL_CMD_GETFAMILY, 1, 0 },
        .a = { sizeof(struct nlattr) + 11, CTRL_ATTR_FAMILY_NAME },
        .name = "acpi_event",
    };
    struct sockaddr_nl kernel = { AF_NETLINK, 0, 0, 0 };
    if (sys6(SYS_sendto, fd, (long)&request, sizeof(request), 0, (long)&kernel, sizeof(kernel)) < 0) return -1;
    long n = sys6(SYS_recvfrom, fd, (long)buffer, sizeof(buffer), 0, 0, 0);
    if (n < (long)(sizeof(struct nlmsghdr) + sizeof(struct genlmsghdr))) return -1;
    const struct nlmsghdr *h = (const void *)buffer;
    if (h->type == NLMSG_ERROR || h->len > (u32)n) return -1;
    for (size_t off = sizeof(struct nlmsghdr) + sizeof(struct genlmsghdr); off + sizeof(struct nlattr) <= h->len;) {
        const struct nlattr *a = (const void *)(buffer + off);
        if (a->len < sizeof(struct nlattr) || off + a->len > h->len) return -1;
        if (a->type == CTRL_ATTR_MCAST_GROUPS)
            return find_group(buffer + off + sizeof(struct nlattr), a->len - sizeof(struct nlattr), "acpi_mc_group");
        off += ALIGN4(a->len);
    }
    return -1;
}

/* Returns 1 when the message in buffer is a power-button event. */
static int is_power_button(long n)
{
    const struct nlmsghdr *h = (const void *)buffer;
    if (n < (long)sizeof(*h) || h->len > (u32)n) return 0;
    for (size_t off = sizeof(struct nlmsghdr) + sizeof(struct genlmsghdr); off + sizeof(struct nlattr) <= h->len;) {
        const struct nlattr *a = (const void *)(buffer + off);
        if (a->len < sizeof(struct nlattr) || off + a->len > h->len) return 0;
        if (a->type == ACPI_GENL_ATTR_EVENT && a->len >= sizeof(struct nlattr) + sizeof(struct acpi_genl_event)) {
            const struct acpi_genl_event *e = (const void *)((const u8 *)a + sizeof(struct nlattr));
            return str_eq(e->device_class, "button/power", sizeof(e->device_class));
        }
        off += ALIGN4(a->len);
    }
    return 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    long fd = sys3(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
    struct sockaddr_nl self = { AF_NETLINK, 0, 0, 0 };
    if (fd < 0 || sys3(SYS_bind, fd, (long)&self, sizeof(self)) < 0) { put("XHYVE-LINUX powerbtn=no-netlink\n"); return 1; }
    long group = resolve_group((int)fd);
    if (group < 0) { put("XHYVE-LINUX powerbtn=no-acpi-event-family\n"); return 1; }
    u32 id = (u32)group;
    if (sys6(SYS_setsockopt, fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, (long)&id, sizeof(id), 0) < 0) {
        put("XHYVE-LINUX powerbtn=join-failed\n");
        return 1;
    }
    put("XHYVE-LINUX powerbtn=listening\n");
    for (;;) {
        long n = sys6(SYS_recvfrom, fd, (long)buffer, sizeof(buffer), 0, 0, 0);
        if (n < 0) { put("XHYVE-LINUX powerbtn=recv-failed\n"); return 1; }
        if (!is_power_button(n)) continue;
        put("XHYVE-LINUX powerbtn=button/power\n");
        if (argc > 1) return 0;
        sys3(SYS_sync, 0, 0, 0);
        sys3(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc); /* LINUX_REBOOT_CMD_POWER_OFF */
        return 1;
    }
}

void __attribute__((noreturn, used)) start_c(long *stack)
{
    quit(main((int)stack[0], (char **)(stack + 1)));
}

__asm__(".global _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n call start_c\n hlt\n");
