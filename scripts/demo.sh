#!/usr/bin/env bash
# Builds the engine and the test guests, then boots the hello guest with COM1 on this terminal.
# With --linux it boots the Debian cloud kernel instead (on a software-nested KVM host it runs to
# its early console and then stops with the host's emulation error; on VT-x/AMD-V it boots on).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build-engine.sh" >/dev/null   # the NativeAOT engine, as it ships: out/engine/xhyve
make -s -C "$root/tests/guests"
xhyve="$root/out/engine/xhyve"
set +e
if [ "${1:-}" = "--linux" ]; then
  kernel=$("$root/tests/linux/fetch-debian-kernel.sh")
  echo "demo: booting $kernel (Ctrl-C or SIGTERM stops it)"
  "$xhyve" -m 512M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "kexec,$kernel,,earlyprintk=serial console=ttyS0"
else
  echo "demo: booting the hello guest"
  "$xhyve" -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -f "multiboot,$root/tests/guests/build/hello.elf"
fi
status=$?
case $status in
  0) echo "demo: the guest powered off (exit 0)";;
  2) echo "demo: the guest reset the machine (exit 2), as the hello guest does when it is done";;
  *) echo "demo: xhyve exited with status $status";;
esac
[ $status -eq 0 ] || [ $status -eq 2 ]
