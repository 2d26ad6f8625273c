#!/usr/bin/env bash
# Installs what `go run ./benchmarks/arch` (and its tests) need to run the
# E4 benchmarks of other architectures on this machine:
#   qemu-user         the emulators, called directly (no binfmt_misc needed);
#                     Debian's build loads TCG plugins, the -static one cannot
#   valgrind          callgrind counts instructions per operation natively
#   gcc, libc6-dev    compile the runner's instruction-counting QEMU plugin
# Idempotent.
set -euo pipefail

need=()
command -v qemu-s390x >/dev/null || need+=(qemu-user)
command -v valgrind >/dev/null || need+=(valgrind)
command -v cc >/dev/null || need+=(gcc)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-bench-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-bench-deps: installed ${need[*]}"
