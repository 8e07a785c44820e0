#!/usr/bin/env bash
# Runs the vnet test guest (tests/guests/vnet.c) on a virtio-net device with the two backends: passt (user
# mode) and a TAP device in a network namespace this script creates. The VMM is QEMU's virtio-net-pci
# (VNET_VMM=qemu, the default: passt through a UNIX socket and -netdev stream, or -netdev tap) or our engine
# (VNET_VMM=xhyve, XHYVE=path/to/xhyve: -s 2,virtio-net which starts passt itself, hostfwd=, tap=). The
# engine's xUnit tests run it both ways and compare: the cross-check against a device nobody here wrote.
# Usage:
#   tests/guests/vnet-check.sh [user] [transitional] [hostfwd] [tap]   (default: all; tap needs root)
# Needs: qemu-system-x86_64 (>= 7.2 for -netdev stream) or the engine, passt, python3, gcc (or
# VNET_ELF=path/to/vnet.elf); tap also needs iproute2 and ping. Changes nothing outside its own temp folder
# and its own namespace, both removed on exit. Prints each guest's XHYVE-TEST lines as "name: XHYVE-TEST ..."
# and "PASS name" / "FAIL name: why"; exits 1 if any scenario failed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/vnet-check.XXXXXX)
chmod 1777 "$T"                    # passt, started as root, drops to nobody before it binds its socket here
NS=xvnet-$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
FAILED=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; FAILED=1; }

if [ -n "${VNET_ELF:-}" ]; then ELF=$VNET_ELF
else make -s -C "$HERE" OUT="$T/build" "$T/build/vnet.elf" >/dev/null || { echo "cannot build vnet.elf"; exit 1; }; ELF=$T/build/vnet.elf; fi

VMM=${VNET_VMM:-qemu}
QEMU=(qemu-system-x86_64 -machine pc -accel kvm -cpu host,-arch-capabilities -m 64 -nodefaults -display none
      -no-reboot -kernel "$ELF")
# run_guest OUT CMDLINE NET...: the guest with its console in OUT; NET is "user NAME [HOSTPORT:GUESTPORT]" or
# "tap IFNAME". For QEMU, user mode needs start_passt NAME first; the engine starts passt itself.
run_guest() {
    local out=$1 cmdline=$2 kind=$3; shift 3
    if [ "$VMM" = xhyve ]; then
        local net=virtio-net
        if [ "$kind" = tap ]; then net+=",tap=$1"; elif [ -n "${2:-}" ]; then net+=",hostfwd=udp:${2%%:*}-:${2##*:}"; fi
        timeout 120 "${XHYVE:?set XHYVE to the engine}" -A -m 64M -s 0,hostbridge -s 31,lpc -l "com1,log=$out" -s "2,$net" \
            -f "multiboot,$ELF,,$cmdline" 2>>"$out.stderr"
    elif [ "$kind" = tap ]; then
        timeout 120 "${QEMU[@]}" -append "$cmdline" -netdev "tap,id=n0,ifname=$1,script=no,downscript=no" \
            -device virtio-net-pci,netdev=n0,disable-legacy=on -serial "file:$out"
    else
        timeout 120 "${QEMU[@]}" -append "$cmdline" $(netdev_passt "$1") -serial "file:$out"
    fi
}
# passt for QEMU only (the engine starts its own): start_passt_for NAME [passt options].
start_passt_for() { [ "$VMM" = xhyve ] || start_passt "$@"; }
# Our guest's results are the "XHYVE-TEST key=value" lines on COM1; "XHYVE-TEST done" ends a run.
result() { sed -n "s/^XHYVE-TEST $2=\([^\r]*\)\r\?$/\1/p" "$1" | tail -1; }
wait_line() {   # file pattern seconds
    for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# Starts passt on a UNIX socket ($T/NAME.sock) with extra options; waits for the socket.
start_passt() {
    local name=$1; shift
    passt --socket "$T/$name.sock" --foreground --one-off "$@" >"$T/$name.passt.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do [ -S "$T/$name.sock" ] && return 0; sleep 0.1; done
    echo "passt did not create its socket:"; cat "$T/$name.passt.log"; return 1
}
DEVOPTS=disable-legacy=on           # modern-only virtio-net-pci (device 0x1041); "transitional" uses 0x1000
netdev_passt() { echo "-netdev stream,id=n0,server=off,addr.type=unix,addr.path=$T/$1.sock -device virtio-net-pci,netdev=n0,$DEVOPTS"; }

# A UDP echo server on the host's loopback, reached by the guest at passt's gateway address (passt maps the
# gateway address to the host unless --no-map-gw).
udp_echo_server() {
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)' "$1" &
    PIDS+=($!)
}
# Sends N datagrams to HOST:PORT one after another and checks each comes back; exit 0 when all did.
udp_client() {   # host port n
    python3 -c '
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for i in range(n):
    msg = b"vnet-check-%d" % i
    s.sendto(msg, (host, port))
    d, a = s.recvfrom(65535)
    if d != msg: sys.exit("datagram %d came back as %r" % (i, d))
print("udp_client: %d round trips" % n)' "$@"
}

scenario_user() {
    local name=${1:-user} port out t0
    port=$((20000 + $$ % 10000 + ${#name})) out=$T/$name.out
    udp_echo_server $port
    start_passt_for "$name" || { fail "$name" "passt"; return; }
    t0=$(date +%s.%N)
    run_guest "$out" "mode=user echo=$port" user "$name"
    report "$name" "$out" "$t0"
    [ "$(result "$out" udp_echo)" = ok ] && [ "$(result "$out" dhcp)" = 1 ] && grep -q "XHYVE-TEST done" "$out" \
        && pass "$name" || fail "$name" "no DHCP lease or no UDP echo"
}

# The same with a transitional virtio-net-pci (device 0x1000, legacy I/O BAR present), driven through its
# modern interface.
scenario_transitional() {
    DEVOPTS=disable-legacy=off scenario_user transitional
    [ "$(result "$T/transitional.out" device_id)" = 0x00001000 ] || fail transitional "device id is not 0x1000"
}

scenario_hostfwd() {
    local hport=$((30000 + $$ % 10000)) gport=7 n=3 out=$T/hostfwd.out t0
    start_passt_for hostfwd -u "$hport:$gport" || { fail hostfwd "passt"; return; }
    t0=$(date +%s.%N)
    run_guest "$out" "mode=listen listen=$gport n=$n secs=60" user hostfwd "$hport:$gport" &
    local qemu=$!; PIDS+=($qemu)
    if wait_line "$out" "XHYVE-TEST listening=" 60; then
        udp_client 127.0.0.1 $hport $n || fail hostfwd "host->guest UDP round trip through passt -u $hport:$gport"
    fi
    wait $qemu
    report hostfwd "$out" "$t0"
    [ "$(result "$out" udp_echoed)" = $n ] && pass hostfwd || fail hostfwd "guest echoed $(result "$out" udp_echoed) of $n"
}

# Sends the guest malformed frames on the TAP (truncated or lying headers): its parser must drop them,
# count them in frames_bad, and keep answering.
bad_frames() {   # ifname guest_mac guest_ip peer_ip
    python3 -c '
import socket, struct, sys
ifname, gmac, gip, pip = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), socket.inet_aton(sys.argv[3]), socket.inet_aton(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
me = s.getsockname()[4]
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
def ip(total, proto=17, ihl=5, fix=True, payload=b""):
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, 0, 64, proto, 0, pip, gip) + b"\0" * (4 * ihl - 20)
    if fix: h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload
eth = lambda t: gmac + me + struct.pack("!H", t)
frames = [
    eth(0x0800),                                                        # header only
    eth(0x0806) + b"\0\1\x08\0\6\4\0\1" + b"\0" * 4,                    # ARP cut short
    eth(0x0800) + ip(1000, payload=b"x" * 20),                          # IP total length beyond the frame
    eth(0x0800) + ip(48, fix=False, payload=b"x" * 28),                 # bad header checksum
    eth(0x0800) + ip(24, ihl=6, payload=b"x" * 4),                      # IP options
    eth(0x0800) + ip(36, payload=struct.pack("!HHHH", 1234, 7, 500, 0) + b"x" * 8),   # UDP length beyond IP
    eth(0x0800) + ip(24, payload=struct.pack("!HH", 1234, 7)),          # UDP header cut short
    eth(0x0800) + ip(22, proto=1, payload=b"\x08\0"),                    # ICMP echo cut short
]
for f in frames: s.send(f)
print("bad_frames: sent %d" % len(frames))' "$@"
}

scenario_tap() {
    local out=$T/tap.out t0
    [ "$(id -u)" = 0 ] || { fail tap "needs root for the namespace and the TAP"; return; }
    ip netns add "$NS" || { fail tap "ip netns add"; return; }
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip tuntap add dev xvtap0 mode tap
    ip netns exec "$NS" ip addr add 10.0.0.1/24 dev xvtap0
    ip netns exec "$NS" ip link set xvtap0 up
    t0=$(date +%s.%N)
    ip netns exec "$NS" bash -c "$(declare -p VMM QEMU ELF XHYVE 2>/dev/null); $(declare -f run_guest netdev_passt); run_guest $out 'mode=static ip=10.0.0.2 peer=10.0.0.1 echo=7 n=1 pings=3 secs=60' tap xvtap0" &
    local qemu=$!; PIDS+=($qemu)
    if wait_line "$out" "XHYVE-TEST listening=" 60; then
        # The guest announced itself (it ARPs for its peer), so forget its MAC: the ping must make the host ARP.
        ip netns exec "$NS" ip neigh flush dev xvtap0
        ip netns exec "$NS" bash -c "$(declare -f bad_frames); bad_frames xvtap0 $(result "$out" mac) 10.0.0.2 10.0.0.1" \
            || fail tap "could not send the malformed frames"
        ip netns exec "$NS" ping -c 3 -W 5 10.0.0.2 || fail tap "ping -c 3 10.0.0.2 from the namespace"
        ip netns exec "$NS" bash -c "$(declare -f udp_client); udp_client 10.0.0.2 7 1" || fail tap "UDP round trip to 10.0.0.2:7"
    fi
    wait $qemu
    report tap "$out" "$t0"
    [ "$(result "$out" icmp_echoed)" -ge 3 ] 2>/dev/null && [ "$(result "$out" udp_echoed)" = 1 ] \
        && [ "$(result "$out" arp_replied)" -ge 1 ] 2>/dev/null && [ "$(result "$out" frames_bad)" -ge 4 ] 2>/dev/null \
        && pass tap || fail tap "guest side: pings, UDP echo, ARP or dropped malformed frames missing"
}

# report NAME OUT T0: how long the guest ran, its results (prefixed with the scenario) and the engine's errors.
report() {
    echo "$1: $VMM ran $(echo "$(date +%s.%N) - $3" | bc) s"
    sed -n "s/^\(XHYVE-TEST [^\r]*\)\r\?$/$1: \1/p" "$2"
    [ -s "$2.stderr" ] && sed "s/^/$1: stderr: /" "$2.stderr"
    return 0
}

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} = 0 ] && SCENARIOS=(user transitional hostfwd tap)
for s in "${SCENARIOS[@]}"; do "scenario_$s"; done
exit $FAILED
