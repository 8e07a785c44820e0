#!/usr/bin/env bash
# Installs what XhyvePS needs on a fresh Debian 12 machine (run as root, or with sudo available):
# the .NET SDK must already be there (dotnet on PATH); this adds clang for the NativeAOT engine, the C toolchain for
# the test guests, the kernel headers the layout tests compile against, the compression libraries the
# kernel loader uses, iasl for the ACPI tests, QEMU for the side-by-side benchmarks, passt for user-mode
# networking (and iproute2/ping for the TAP tests), OpenSSH for the remoting tests (which run their own
# sshd; the system's is never started), SeaBIOS and OVMF for the boot-ROM tests, PowerShell and Pester for the Pester suite, and fetches the
# Debian cloud kernel.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  gcc gcc-multilib make linux-libc-dev        # test guests (gcc -m32) and <linux/kvm.h>
  clang                                       # NativeAOT links the engine with clang (binutils' objcopy strips it)
  liblzma5 liblz4-1 libzstd1                  # host-side kernel payload decompression
  gzip xz-utils lz4 zstd                      # reference compressors for the payload tests
  acpica-tools                                # iasl: the ACPI tables are checked with the real disassembler
  procps                                      # kill(1), used by the tests to signal the engine
  cpio busybox-static                         # the Linux tests' initramfs (tests/linux/make-initramfs.sh)
  qemu-system-x86 time                        # QEMU cross-checks (virtio-blk, AHCI) and side-by-side benchmarks
  xorriso                                     # ISO 9660 images for the AHCI CD tests (xorriso -as mkisofs)
  fio                                         # the host baseline of the storage benchmark
  e2fsprogs                                   # chattr (disk tests); mke2fs, e2fsck, debugfs (the Linux tests)
  afl++                                       # afl-fuzz for the fuzz targets (bench/fuzz.sh, docs/fuzzing.md)
  passt                                       # user-mode networking: the engine starts passt for -s N,virtio-net
  iproute2 iputils-ping python3 bc            # TAP tests in a network namespace; vnet-check.sh's echo peers and timing
  openssh-server openssh-client               # remoting tests: PowerShell over SSH to an sshd of the test's own
  seabios ovmf                                # boot ROMs (-l bootrom): SeaBIOS and OVMF for the firmware tests
)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # A fresh openssh-server would start (and, under systemd, enable) a system sshd on port 22: the tests need only
  # the binary. Debian's ssh unit and init script do not run while /etc/ssh/sshd_not_to_be_run exists, so it is
  # made before the package's postinst; a policy-rc.d (as Docker images have) refuses starts during the install.
  policy_rc=
  remove_policy_rc() { if [ -n "$policy_rc" ]; then as_root rm -f "$policy_rc"; policy_rc=; fi; }
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    as_root mkdir -p /etc/ssh
    as_root sh -c 'echo "made by XhyvePS scripts/setup-debian.sh: the tests run their own sshd" > /etc/ssh/sshd_not_to_be_run'
    echo "setup: the system sshd is left off (remove /etc/ssh/sshd_not_to_be_run to run it)"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy_rc=/usr/sbin/policy-rc.d
      # Ours alone, and removed however the script ends (apt failing, Ctrl-C, a kill): a policy-rc.d left behind
      # would refuse every later service start on this machine. A signal exits with its usual status after.
      trap 'remove_policy_rc' EXIT
      trap 'remove_policy_rc; trap - INT; kill -INT $$' INT
      trap 'remove_policy_rc; trap - TERM; kill -TERM $$' TERM
      trap 'remove_policy_rc; trap - HUP; kill -HUP $$' HUP
      as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    fi
  fi
  status=0
  { as_root apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  remove_policy_rc
  [ "$status" -eq 0 ] || exit "$status"
fi
command -v dotnet >/dev/null || { echo "setup: the .NET 10 SDK (dotnet) is required" >&2; exit 1; }
dotnet restore "$root/XhyvePS.sln" --nologo -v quiet
# The engine host as it ships, NativeAOT: out/engine/xhyve (the demo runs it; the test build keeps it current).
"$root/scripts/build-engine.sh"

# PowerShell, pinned, as a .NET global tool (in ~/.dotnet/tools, which scripts/test.sh puts on PATH):
# the module targets .NET 10, which pwsh runs on from 7.6.
pwsh_version=7.6.9
installed=$(dotnet tool list --global | awk 'tolower($1) == "powershell" { print $2 }')
if [ "$installed" != "$pwsh_version" ]; then
  [ -z "$installed" ] || dotnet tool uninstall --global PowerShell >/dev/null
  echo "setup: installing PowerShell $pwsh_version (dotnet global tool)"
  dotnet tool install --global PowerShell --version "$pwsh_version" >/dev/null
fi

# The SharpFuzz instrumenter, pinned, as a .NET global tool (bench/fuzz.sh instruments the assemblies under test
# with it before afl-fuzz runs them; the harness project takes the matching SharpFuzz package from NuGet).
sharpfuzz_version=2.3.0
installed=$(dotnet tool list --global | awk 'tolower($1) == "sharpfuzz.commandline" { print $2 }')
if [ "$installed" != "$sharpfuzz_version" ]; then
  [ -z "$installed" ] || dotnet tool uninstall --global SharpFuzz.CommandLine >/dev/null
  echo "setup: installing SharpFuzz.CommandLine $sharpfuzz_version (dotnet global tool)"
  dotnet tool install --global SharpFuzz.CommandLine --version "$sharpfuzz_version" >/dev/null
fi

# Pester from NuGet (pinned in tests/pester/modules), laid out as a module folder under .cache/pester/modules
# so that build.ps1 can put it on PSModulePath.
pester_project="$root/tests/pester/modules/PesterModules.csproj"
pester_version=$(sed -n 's/.*Include="Pester" Version="\[\([^]]*\)\]".*/\1/p' "$pester_project")
pester_module="$root/.cache/pester/modules/Pester/$pester_version"
if [ ! -f "$pester_module/Pester.psd1" ]; then
  dotnet restore "$pester_project" --nologo -v quiet
  rm -rf "$pester_module" && mkdir -p "$(dirname "$pester_module")"
  cp -r "$root/.cache/pester/packages/pester/$pester_version/tools" "$pester_module"
fi

"$root/tests/linux/fetch-debian-kernel.sh" >/dev/null

# The Linux test kernel's x2APIC build (for the -x test), from the shared test kernel's sources and
# build script: a few minutes once, then cached in .cache/linux/testkernel-x2apic.
testkernel="$root/../shared/linux-testkernel"
if [ -x "$testkernel/build.sh" ]; then
  echo "setup: building the x2APIC test kernel (cached after the first time)"
  "$root/tests/linux/build-x2apic-kernel.sh" "$testkernel" >/dev/null
else
  echo "setup: no Linux test kernel sources at $testkernel; the x2APIC Linux test will say so and skip"
fi
echo "setup: done"
