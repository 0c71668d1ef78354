#!/usr/bin/env bash
# Builds the stand-in VM image for the VM test (`make vm-test`): a minimal
# Debian bookworm root filesystem made with debootstrap, with systemd as
# PID 1, imported into Docker as $VM_IMAGE (default
# troupe/vm-base:bookworm). Nothing can be pulled here, but Debian's
# packages can be fetched. The image is the cache: when it exists this
# does nothing, so only the first run pays for debootstrap (about 1.5-2
# min). `docker image rm troupe/vm-base:bookworm` forces a rebuild.
#
# Needs root (debootstrap), debootstrap itself (installed with apt-get when
# missing and root) and Docker. The mirror is the one apt uses on this
# machine (/etc/apt/sources.list.d/debian.sources or sources.list), else
# deb.debian.org; DEBIAN_MIRROR overrides it.
set -euo pipefail

VM_IMAGE=${VM_IMAGE:-troupe/vm-base:bookworm}
SUITE=${SUITE:-bookworm}

if docker image inspect "$VM_IMAGE" >/dev/null 2>&1; then
  echo "base-image: $VM_IMAGE exists (docker image rm it to rebuild)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "base-image: debootstrap needs root to build $VM_IMAGE" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
fi
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^deb[[:space:]]\+\(\S*\/debian\)\/\?[[:space:]]\+'"$SUITE"'[[:space:]].*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d "${TMPDIR:-/tmp}/troupe-vm-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "base-image: debootstrap $SUITE from $mirror into $root"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,iproute2,ca-certificates,curl,procps \
  "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -30 "$root.log" >&2
  rm -f "$root.log"
  exit 1
}
rm -f "$root.log"

# A container boots this: no getty on consoles it lacks, no units that
# need hardware or a real kernel's clock, a fixed machine id per container
# (systemd writes one at boot when the file is empty).
chroot "$root" systemctl mask \
  getty@tty1.service console-getty.service serial-getty@.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  systemd-remount-fs.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
  >/dev/null 2>&1 || true
: >"$root/etc/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
  -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
  - "$VM_IMAGE" >/dev/null
echo "base-image: $VM_IMAGE built in $(($(date +%s) - start))s"
docker image ls "$VM_IMAGE"
