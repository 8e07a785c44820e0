#!/usr/bin/env bash
# Networking benchmark (issue 12): UDP throughput of the vnet test guest (tests/guests/vnet.c, modes blast and
# sink) through virtio-net, guest -> host and host -> guest, over passt and over a TAP, under our engine and under
# QEMU's virtio-net-pci with the same backend. One table of packets/s and Mbit/s (UDP payload) per case.
#   bash bench/net.sh            (root: the TAP lives in a network namespace the script creates and removes)
# Settings (environment): RUNS=3 (median of RUNS per cell), SIZE=1472 (UDP payload bytes: 1514-byte frames),
# N=80000 (datagrams the guest sends), RATE=40000 (datagrams/s the host offers), SECS=4 (how long it offers them),
# ONLY='passt h2g' (one case), DIAG=1 (one more run of ours per case with --verbose: the device counters),
# XHYVE_ENGINE=path (else the shipped NativeAOT engine, built first by scripts/build-engine.sh).
# Needs qemu-system-x86_64 (>= 7.2 for -netdev stream), passt, python3, iproute2, gcc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3} SIZE=${SIZE:-1472} N=${N:-80000} RATE=${RATE:-40000} SECS=${SECS:-4} DIAG=${DIAG:-0}
[ "$(id -u)" = 0 ] || { echo "bench/net.sh: needs root (the TAP and its network namespace)"; exit 1; }
. "$root/bench/lib.sh"
bench_engine
make -s -C "$root/tests/guests"
guest=$root/tests/guests/build/vnet.elf

T=$(mktemp -d /tmp/netbench.XXXXXX)
chmod 1777 "$T"                  # passt, started as root, drops to nobody before it binds its socket here
NS=xnetbench-$$ TAP=xnbtap0
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip tuntap add dev $TAP mode tap
ip netns exec "$NS" ip addr add 10.0.0.1/24 dev $TAP
ip netns exec "$NS" ip link set $TAP up

# The guest is told the TSC rate (the host's; KVM does not scale it here), so both VMMs time with the same clock.
tsc_mhz() {
  local mhz
  mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p; s/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
  [ -n "$mhz" ] || mhz=$(awk -F': ' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
  awk -v m="$mhz" 'BEGIN { printf "%d", m }'
}
TSC=$(tsc_mhz)

# Host side, guest -> host: counts datagrams on HOST:PORT; the rate runs from the first to the last one.
cat > "$T/sink.py" <<'EOF'
import socket, sys, time
host, port, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((host, port))
print("ready", flush=True)
s.settimeout(90)
try:
    d = s.recv(65535)
except socket.timeout:
    print("received=0 bytes=0 secs=0", flush=True); sys.exit()
t0 = t1 = time.monotonic(); n = 1; b = len(d)
s.settimeout(idle)
try:
    while True:
        d = s.recv(65535); t1 = time.monotonic(); n += 1; b += len(d)
except socket.timeout:
    pass
print("received=%d bytes=%d secs=%.6f" % (n, b, t1 - t0), flush=True)
EOF
# Host side, host -> guest: offers RATE datagrams/s (bursts of 32) to HOST:PORT for SECS seconds.
cat > "$T/blast.py" <<'EOF'
import socket, sys, time
host, port, size, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
msg = b"x" * size; dst = (host, port)
burst = 32; period = burst / rate
n = err = 0; t0 = time.monotonic(); nxt = t0
while True:
    now = time.monotonic()
    if now - t0 >= secs: break
    if now < nxt: time.sleep(nxt - now)
    nxt += period
    for _ in range(burst):
        try: s.sendto(msg, dst); n += 1
        except OSError: err += 1
print("offered=%d errors=%d secs=%.3f" % (n, err, time.monotonic() - t0), flush=True)
EOF

wait_line() {   # file pattern seconds
  for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
result() { sed -n "s/^XHYVE-TEST $2=\([^\r]*\)\r\?$/\1/p" "$1" | tail -1; }

HPORT=$((20000 + $$ % 10000))   # host port: the sink's (guest -> host) or passt's forward (host -> guest)
GPORT=5001                       # the guest's sink port
PASSTSOCK=$T/passt.sock
# The VMM command lines, GUESTARGS and per-backend parts filled in by vmm_cmd.
vmm_cmd() {   # vmm backend dir guestargs out
  local vmm=$1 backend=$2 dir=$3 args="$4 tsc_mhz=$TSC" out=$5
  if [ "$vmm" = ours ]; then
    local nic="2,virtio-net"
    [ "$backend" = tap ] && nic="2,virtio-net,tap=$TAP"
    [ "$backend" = passt ] && [ "$dir" = h2g ] && nic="2,virtio-net,hostfwd=udp:$HPORT-:$GPORT"
    CMD=("$engine" -A -m 64M -s 0,hostbridge -s 31,lpc -l com1,stdio -s "$nic" ${VERBOSE:+--verbose} -f "multiboot,$guest,,$args")
  else
    local netdev="stream,id=n0,server=off,addr.type=unix,addr.path=$PASSTSOCK"
    [ "$backend" = tap ] && netdev="tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off"
    CMD=(qemu-system-x86_64 -machine pc -accel kvm -cpu host,-arch-capabilities -m 64 -nodefaults -display none -name vnet,debug-threads=on
         -no-reboot -serial stdio -kernel "$guest" -append "$args"
         -netdev "$netdev" -device virtio-net-pci,netdev=n0,disable-legacy=on)
  fi
  [ "$backend" = tap ] && CMD=(ip netns exec "$NS" "${CMD[@]}")
  true
}
# QEMU's passt: one per run, on a UNIX socket, forwarding the host port for host -> guest (ours starts its own).
start_passt() {   # dir
  rm -f "$PASSTSOCK"
  local fwd=()
  [ "$1" = h2g ] && fwd=(-u "$HPORT:$GPORT")
  passt --socket "$PASSTSOCK" --foreground --one-off --quiet "${fwd[@]}" >"$T/passt.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$PASSTSOCK" ] && return 0; sleep 0.1; done
  echo "passt did not create its socket:"; cat "$T/passt.log"; return 1
}

# CPU ticks (user+sys, 1/100 s) of a process's threads: "vcpu other" (vcpu: ours' vcpu0, QEMU's "CPU 0/KVM").
ticks() {   # pid
  local t v=0 o=0 x name
  for t in /proc/$1/task/*; do
    x=$(sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    [ -n "$x" ] || continue
    name=$(cat "$t/comm" 2>/dev/null)
    case "$name" in vcpu*|CPU*KVM) v=$((v + x));; *) o=$((o + x));; esac
  done
  echo "$v $o"
}
# Samples ticks of the VMM (and passt) every 0.2 s while the VMM lives; the last sample stays in FILE.
# A sample taken while the VMM exits (threads gone, counts falling) is not kept.
watch_cpu() {   # vmpid passtpid file
  local p="" q last="-1 -1"
  while kill -0 "$1" 2>/dev/null; do
    [ -z "$2" ] || p=$(ticks "$2" | awk '{ print $1 + $2 }')
    q=$(ticks "$1")
    if [ -n "$q" ] && awk -v a="$q" -v b="$last" 'BEGIN { split(a, x, " "); split(b, y, " "); exit !(x[1] >= y[1] && x[2] >= y[2]) }'; then
      echo "$q ${p:-0} $(date +%s.%N)" > "$3.tmp" && mv "$3.tmp" "$3"
      last=$q
    fi
    sleep 0.1
  done
}
# Starts CMD under a 120 s bound with its output in $out; sets VM (the VMM's pid) and WATCH (the sampler).
start_vm() {
  timeout 120 "${CMD[@]}" > "$out" 2>"$T/last.err" & BOUND=$!
  VM=""
  for _ in $(seq 50); do VM=$(pgrep -P $BOUND | head -1); [ -n "$VM" ] && break; sleep 0.05; done
  local pp=$PASSTPID
  if [ "$vmm" = ours ] && [ "$backend" = passt ]; then
    for _ in $(seq 40); do pp=$(pgrep -P "${VM:-0}" | head -1); [ -n "$pp" ] && break; sleep 0.05; done
  fi
  rm -f "$T/cpu"
  watch_cpu "${VM:-0}" "$pp" "$T/cpu" & WATCH=$!
}
# vCPU share and host CPU per packet between two samples: "vcpu_share vmm_us_per_packet passt_us_per_packet".
cpu_figures() {   # sample_before sample_after packets
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { split(a, x, " "); split(b, y, " ")
    secs = y[4] - x[4]; if (secs <= 0 || n <= 0) { print "- - -"; exit }
    printf "%.2f %.1f %.1f\n", (y[1] - x[1]) / 100 / secs, (y[2] - x[2]) * 1e4 / n, (y[3] - x[3]) * 1e4 / n }'
}

# One measurement; prints "pps mbit vcpu_share vmm_us passt_us" (0 ... when it failed) and leaves the guest's output
# in $T/last.out. vcpu_share: the vCPU thread's CPU time over the transfer / its length (what the host's load left the
# guest); vmm_us: CPU of the VMM's other threads per packet (µs); passt_us: passt's CPU per packet (µs).
measure() {   # vmm backend dir
  local vmm=$1 backend=$2 dir=$3 out=$T/last.out host ip peer line c0 c1
  if [ "$backend" = tap ]; then host=10.0.0.1 ip="ip=10.0.0.2" peer="peer=10.0.0.1"; else host=127.0.0.1 ip="" peer=""; fi
  PASSTPID=""
  if [ "$vmm" = qemu ] && [ "$backend" = passt ]; then start_passt "$dir" >&2 || true; PASSTPID=${PIDS[-1]}; fi
  : > "$out"
  if [ "$dir" = g2h ]; then
    local sinkcmd=(python3 "$T/sink.py" "$host" "$HPORT" 1)
    [ "$backend" = tap ] && sinkcmd=(ip netns exec "$NS" "${sinkcmd[@]}")
    "${sinkcmd[@]}" > "$T/sink.out" & local sink=$!
    wait_line "$T/sink.out" ready 10 || true
    vmm_cmd "$vmm" "$backend" "$dir" "mode=blast port=$HPORT n=$N size=$SIZE $ip $peer secs=60" "$out"
    start_vm
    wait_line "$out" "XHYVE-TEST blasting=" 60 || true
    c0=$(cat "$T/cpu" 2>/dev/null)
    wait_line "$out" "XHYVE-TEST sent=" 90 || true
    c1=$(cat "$T/cpu" 2>/dev/null)
    wait $BOUND || true
    wait $WATCH || true
    wait $sink || true
    line=$(tail -1 "$T/sink.out")
    python3 -c 'import sys; d = dict(x.split("=") for x in sys.argv[1].split()); n, b, s = int(d["received"]), int(d["bytes"]), float(d["secs"])
print("%.0f %.1f %d" % ((n / s, b * 8 / s / 1e6, n) if s > 0 else (0, 0, 0)))' "$line" 2>/dev/null | {
      read -r pps mbit n; echo "$pps $mbit $(cpu_figures "$c0" "$c1" "$n")"; } || echo "0 0 - - -"
  else
    vmm_cmd "$vmm" "$backend" "$dir" "mode=sink port=$GPORT $ip idle=1000 secs=60" "$out"
    start_vm
    if wait_line "$out" "XHYVE-TEST sinking=" 60; then
      local target=$host port=$HPORT blastcmd
      [ "$backend" = tap ] && target=10.0.0.2 port=$GPORT
      blastcmd=(python3 "$T/blast.py" "$target" "$port" "$SIZE" "$RATE" "$SECS")
      [ "$backend" = tap ] && blastcmd=(ip netns exec "$NS" "${blastcmd[@]}")
      sleep 0.3; c0=$(cat "$T/cpu" 2>/dev/null)
      "${blastcmd[@]}" > "$T/blast.out"
      c1=$(cat "$T/cpu" 2>/dev/null)
    fi
    wait $BOUND || true
    wait $WATCH || true
    local n us
    n=$(result "$out" received) us=$(result "$out" elapsed_us)
    awk -v n="${n:-0}" -v us="${us:-0}" -v size="$SIZE" -v cpu="$(cpu_figures "$c0" "$c1" "${n:-0}")" \
      'BEGIN { if (us > 0) printf "%.0f %.1f %s\n", n * 1e6 / us, n * size * 8 / us, cpu; else print "0 0 - - -" }'
  fi
}

CASES=("passt g2h" "passt h2g" "tap g2h" "tap h2g")
[ -n "${ONLY:-}" ] && CASES=("$ONLY")
declare -A R
t_start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
  for c in "${CASES[@]}"; do
    for vmm in ours qemu; do
      r=$(measure $vmm $c)
      r="$r $(awk -v r="$r" 'BEGIN { split(r, x, " "); if (x[3] + 0 > 0) printf "%.0f", x[1] / x[3]; else print "-" }')"
      R["$vmm $c"]+="$r;"
      echo "run $run: $vmm $c: $r (pps Mbit/s vcpu_share vmm_us passt_us pps_per_vcpu_second)" >&2
    done
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# median, min and max of one field of a cell's "pps mbit share vmm_us passt_us pps_per_vcpu_s;" list.
med() {   # list field
  echo "$1" | tr ';' '\n' | awk -v f="$2" 'NF { print $f }' | sort -g |
    awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s %s\n", m, v[1], v[NR] }'
}
name() { case "$1" in "passt g2h") echo "passt, guest -> host";; "passt h2g") echo "passt, host -> guest";; "tap g2h") echo "TAP, guest -> host";; "tap h2g") echo "TAP, host -> guest";; esac; }

echo
echo "Host: $(nproc) CPUs, $(uname -r), KVM module: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm); $(qemu-system-x86_64 --version | head -1); passt $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo "(version unknown)")"
echo "Load average before/after: $load_before / $load_after; $RUNS runs per cell (median, min-max); UDP payload $SIZE bytes; guest sends N=$N; host offers $RATE/s for ${SECS}s; $(( $(date +%s) - t_start )) s"
echo
echo "| backend, direction | ours pps | QEMU pps | ours Mbit/s | QEMU Mbit/s | ours / QEMU | pps per vCPU-second ours / QEMU | vCPU share ours / QEMU | VMM µs/packet ours / QEMU | passt µs/packet ours / QEMU |"
echo "|---|---|---|---|---|---|---|---|---|---|"
notes=""
for c in "${CASES[@]}"; do
  read -r op omin omax <<<"$(med "${R[ours $c]}" 1)"
  read -r qp qmin qmax <<<"$(med "${R[qemu $c]}" 1)"
  f() { read -r m _ _ <<<"$(med "${R[$1 $c]}" "$2")"; echo "$m"; }
  ratio=$(awk -v a="$op" -v b="$qp" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }')
  pu="-"; [ "${c%% *}" = passt ] && pu="$(f ours 5) / $(f qemu 5)"
  echo "| $(name "$c") | $op ($omin-$omax) | $qp ($qmin-$qmax) | $(f ours 2) | $(f qemu 2) | $ratio | $(f ours 6) / $(f qemu 6) | $(f ours 3) / $(f qemu 3) | $(f ours 4) / $(f qemu 4) | $pu |"
  case "$c" in *h2g) awk -v a="$omax" -v b="$qmax" -v r="$RATE" 'BEGIN { exit !(a > 0.9 * r || b > 0.9 * r) }' &&
    notes+="Note: in '$(name "$c")' a guest took over 90 % of the offered rate; raise RATE to saturate it."$'\n' ;; esac
done
printf "%s" "$notes"
show_cmd() { local a; for a in "${CMD[@]}"; do case $a in *' '*) printf " '%s'" "$a";; *) printf ' %s' "$a";; esac; done; echo; }
echo
echo "Reproduce one cell (guest -> host over passt, ours): sink on 127.0.0.1:PORT, then"
VERBOSE='' vmm_cmd ours passt g2h "mode=blast port=PORT n=$N size=$SIZE secs=60" /dev/null; show_cmd
echo "and QEMU with passt --socket SOCK --one-off:"
PASSTSOCK=SOCK vmm_cmd qemu passt g2h "mode=blast port=PORT n=$N size=$SIZE secs=60" /dev/null; show_cmd

if [ "$DIAG" = 1 ]; then
  echo
  echo "Device counters of ours (one --verbose run per case):"
  for c in "${CASES[@]}"; do
    ( VERBOSE=1 measure ours $c ) >/dev/null || true
    echo "$c: guest notifies=$(result "$T/last.out" notifies) $(grep -o 'virtio-net.*' "$T/last.err" | grep -v doorbells | tr '\n' ' ')"
  done
fi
