/* acpi: finds the firmware tables a guest OS looks for and reports what they say:
 * RSDP -> XSDT -> MADT (one LAPIC or x2APIC entry per CPU), the FADT's PM blocks, the MP table's
 * processor entries and the SMBIOS structure count. */
#include "lib/guest.h"

static int sum_ok(const uint8_t *p, uint32_t n) { uint8_t s = 0; while (n--) s += *p++; return s == 0; }
static int sig(const void *p, const char *s) { const char *a = p; for (int i = 0; s[i]; i++) if (a[i] != s[i]) return 0; return 1; }
static const uint8_t *scan(const char *anchor, uint32_t step)
{
    for (uint32_t a = 0xE0000; a < 0x100000; a += step) if (sig((const void *)a, anchor)) return (const uint8_t *)a;
    return 0;
}
static uint32_t u32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

void guest_main(uint32_t magic, struct multiboot_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    const uint8_t *rsdp = scan("RSD PTR ", 16);
    report("rsdp_found", rsdp != 0);
    if (rsdp) {
        report("rsdp_checksum_ok", sum_ok(rsdp, 20) && sum_ok(rsdp, 36));
        const uint8_t *xsdt = (const uint8_t *)u32(rsdp + 24);   /* below 4 GiB: the high half is zero */
        report("xsdt_checksum_ok", sig(xsdt, "XSDT") && sum_ok(xsdt, u32(xsdt + 4)));
        uint32_t n = (u32(xsdt + 4) - 36) / 8, lapics = 0, x2apics = 0;
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *t = (const uint8_t *)u32(xsdt + 36 + 8 * i);
            char name[5] = { (char)t[0], (char)t[1], (char)t[2], (char)t[3], 0 };
            report_str("table", name);
            if (!sum_ok(t, u32(t + 4))) report_str("bad_checksum", name);
            if (sig(t, "APIC")) {
                for (uint32_t at = 44; at < u32(t + 4); at += t[at + 1]) {
                    if (t[at] == 0 && (u32(t + at + 4) & 1)) lapics++;
                    if (t[at] == 9 && (u32(t + at + 8) & 1)) x2apics++;
                    if (t[at + 1] == 0) break;
                }
            }
            if (sig(t, "FACP")) {
                report_hex("pm1a_evt", u32(t + 56));
                report_hex("pm1a_cnt", u32(t + 64));
                report_hex("pm_tmr", u32(t + 76));
            }
        }
        report("madt_lapics", lapics);
        report("madt_x2apics", x2apics);
    }
    const uint8_t *mp = scan("_MP_", 16);
    report("mp_found", mp != 0);
    if (mp) {
        const uint8_t *cfg = (const uint8_t *)u32(mp + 4);
        uint32_t cpus = 0, at = 44, count = u16(cfg + 34);
        for (uint32_t i = 0; i < count; i++) { if (cfg[at] == 0) cpus++; at += cfg[at] == 0 ? 20 : 8; }
        report("mp_checksum_ok", sum_ok(mp, 16) && sum_ok(cfg, u16(cfg + 4)));
        report("mp_cpus", cpus);
    }
    const uint8_t *sm = scan("_SM_", 16);
    report("smbios_found", sm != 0);
    if (sm) report("smbios_structures", u16(sm + 28));
    test_done();
}
