#!/usr/bin/env bash
# Builds a Debian 12 (bookworm) cloud image: systemd, ifupdown with isc-dhcp-client, dbus and
# cloud-init, booted by Debian's cloud kernel. It mounts nothing on the host (the host may lack
# vfat and loop partitions), except /proc inside the root tree while cloud-init is installed.
#
# Layout, as in build-guest-image.sh: MBR + SYSLINUX, partition 1 FAT16 with the kernel and a
# busybox stage-1 initramfs that loads the virtio disk driver, partition 2 ext4 root filled by
# `mke2fs -d`. The root tree carries the kernel's full module tree, so udev loads the rest.
#
# cloud-init uses only NoCloud, and the kernel command line points it at the seed on the metadata
# address (`ds=nocloud-net;s=http://169.254.169.254/nocloud/`). The guest reaches that address
# through the DHCP server's classless route (option 121), which dhclient applies with Debian's
# rfc3442 exit hook.
#
# Usage: build-debian-image.sh [--output PATH]
# The image is rebuilt only when this script, the mirror or a package version changed; the path
# is printed. Needs root, apt, debootstrap and the packages in install-host-packages.sh.
set -euo pipefail

output=/var/cache/tstack/images/debian-12-cloud.qcow2
suite=bookworm
seed_url=http://169.254.169.254/nocloud/
packages=systemd-sysv,udev,ifupdown,isc-dhcp-client,iproute2,kmod,dbus

while [ $# -gt 0 ]; do
  case "$1" in
    --output)
      output="${2:?--output needs a path}"
      shift 2
      ;;
    --output=*)
      output="${1#--output=}"
      shift
      ;;
    *)
      echo "build-debian-image.sh: unknown option '$1'. Usage: build-debian-image.sh [--output PATH]" >&2
      exit 2
      ;;
  esac
done

fail() {
  echo "build-debian-image.sh: $*" >&2
  exit 1
}

# Prints the URI of the first enabled `deb` source for $suite, from one-line .list files and
# deb822 .sources files alike. The machine may only reach its own mirror, so none is hard-coded.
apt_mirror() {
  local files=()
  local file

  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && files+=("$file")
  done

  [ "${#files[@]}" -gt 0 ] || return 0
  awk -v suite="$suite" '
    function flush() {
      if (found) return
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uri != "") {
        print uri
        found = 1
        exit
      }
      types = ""; uris = ""; suites = ""; enabled = ""; uri = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      field = tolower($1); sub(/:$/, "", field); $1 = ""; sub(/^ +/, "")
      if (field == "types") types = $0
      else if (field == "uris") { split($0, all, " "); uri = all[1] }
      else if (field == "suites") suites = $0
      else if (field == "enabled") enabled = tolower($0)
      next
    }
    $1 == "deb" {
      n = 2
      if ($2 ~ /^\[/) { while (n <= NF && $n !~ /\]$/) n++; n++ }
      if ($(n + 1) == suite) { print $n; found = 1; exit }
    }
    END { flush() }
  ' "${files[@]}"
}

mirror=$(apt_mirror)
[ -n "$mirror" ] || fail "no 'deb' source for $suite in /etc/apt/sources.list(.d). Add the Debian mirror there"

# The metapackage names the current kernel package, e.g. linux-image-6.1.0-57-cloud-amd64.
kernel_package=$(apt-cache depends linux-image-cloud-amd64 |
  sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
[ -n "$kernel_package" ] || fail "cannot resolve linux-image-cloud-amd64. Run apt-get update"

candidate() {
  apt-cache policy "$1" | sed -n 's/^ *Candidate: //p'
}

script_hash=$(sha256sum "$0" | cut -d' ' -f1)
inputs="$script_hash mirror=$mirror $kernel_package=$(candidate "$kernel_package")"
inputs+=" systemd=$(candidate systemd) cloud-init=$(candidate cloud-init)"
inputs+=" busybox=$(dpkg-query -W -f='${Version}' busybox-static)"
inputs+=" syslinux=$(dpkg-query -W -f='${Version}' syslinux)"
inputs+=" debootstrap=$(dpkg-query -W -f='${Version}' debootstrap)"
stamp="$output.inputs"

if [ -f "$output" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "$output"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tstack-debian-image.XXXXXX")
rootfs="$work/rootfs"
partial="$output.partial.$$"

# Unmounts whatever is still mounted in the tree (our /proc, or debootstrap's own mounts when it
# failed midway) before deleting anything, so a failure never leaves a mount behind or lets rm
# walk into /proc. Deepest first.
cleanup() {
  local mounted

  for mounted in $(awk -v root="$rootfs" 'index($2, root "/") == 1 { print $2 }' /proc/mounts |
    sort -r); do
    umount "$mounted" || umount -l "$mounted"
  done
  rm -rf "$work" "$partial"
}
trap cleanup EXIT

# 1. Root tree: minbase plus init, networking and D-Bus. Without dbus systemd-logind does not
# run and the guest ignores ACPI power-off.
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  fail "debootstrap $suite from $mirror failed (log above)"
}

# 2. cloud-init, installed by apt inside the tree, because debootstrap cannot resolve the virtual
# packages python3-cryptography depends on. /proc is mounted only for this step. The policy file
# keeps package scripts from starting services on the build host.
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
  apt-get install -y -q --no-install-recommends cloud-init >"$work/cloud-init.log" 2>&1 || {
  tail -n 30 "$work/cloud-init.log" >&2
  fail "apt-get install cloud-init in the root tree failed (log above)"
}
chroot "$rootfs" apt-get clean
umount "$rootfs/proc"
rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs/etc/resolv.conf"
rm -rf "$rootfs"/var/lib/apt/lists/*

[ -x "$rootfs/etc/dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes" ] ||
  [ -f "$rootfs/etc/dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes" ] ||
  fail "isc-dhcp-client in the tree lacks the rfc3442 hook; guests would miss the metadata route"

# 3. Guest configuration. An empty machine-id makes systemd treat the first boot as such and
# generate one per VM, instead of every VM sharing the build's.
: >"$rootfs/etc/machine-id"
echo debian >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
echo "/dev/vda2 / ext4 rw,errors=remount-ro 0 1" >"$rootfs/etc/fstab"
cat >"$rootfs/etc/cloud/cloud.cfg.d/90-tstack.cfg" <<'EOF'
# tstack serves the NoCloud seed on the metadata address, so probing other clouds only costs time.
datasource_list: [ NoCloud, None ]
# The image has no locales package, so only the C, C.UTF-8 and POSIX locales of glibc exist.
locale: C.UTF-8
EOF

# 4. Kernel: fetched and unpacked, never installed on the host. The whole module tree goes into
# the guest, so udev finds the NIC, RNG and ACPI button drivers by their aliases.
mkdir -p "$work/deb" "$work/kernel"
(cd "$work/deb" && apt-get download -q "$kernel_package" >/dev/null 2>"$work/apt.err") || {
  cat "$work/apt.err" >&2
  fail "apt-get download $kernel_package failed. Check the apt sources"
}
dpkg -x "$work"/deb/*.deb "$work/kernel"
kver=$(basename "$(ls -d "$work"/kernel/lib/modules/*)")
depmod -b "$work/kernel" "$kver"
mkdir -p "$rootfs/lib/modules"
cp -a "$work/kernel/lib/modules/$kver" "$rootfs/lib/modules/"
depmod -b "$rootfs" "$kver"

# 5. Stage-1 initramfs: busybox loads virtio_pci and virtio_blk (modules in the cloud kernel),
# mounts the root read-only for systemd to check and remount, and hands over to systemd.
initramfs="$work/initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,newroot,lib/modules/"$kver"}
cp /bin/busybox "$initramfs/bin/busybox"
for applet in sh mount umount sed sleep modprobe switch_root; do
  ln -s busybox "$initramfs/bin/$applet"
done
mknod -m 600 "$initramfs/dev/console" c 5 1
for module in virtio_pci virtio_blk; do
  modprobe -d "$work/kernel" -S "$kver" --show-depends "$module" |
    sed -n 's/^insmod \([^ ]*\).*/\1/p' |
    while read -r file; do
      relative="${file#"$work/kernel"}"
      mkdir -p "$initramfs$(dirname "$relative")"
      cp "$file" "$initramfs$relative"
    done
done
cp "$work/kernel/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} \
  "$initramfs/lib/modules/$kver/"
depmod -b "$initramfs" "$kver"
cat >"$initramfs/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe virtio_pci
modprobe virtio_blk

root=$(sed -n 's/.*root=\([^ ]*\).*/\1/p' /proc/cmdline)
tries=0
while [ ! -b "$root" ] && [ "$tries" -lt 100 ]; do
  sleep 0.1
  tries=$((tries + 1))
done

if ! mount -t ext4 -o ro "$root" /newroot; then
  echo "stage1: cannot mount root=$root" >/dev/console
  exec sh
fi

mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/init
EOF
chmod 755 "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/initrd.gz"

# 6. Disk. SYSLINUX passes APPEND to the kernel verbatim, so the ';' of the NoCloud seed
# argument survives, and cloud-init reads it back from /proc/cmdline.
cat >"$work/syslinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0 no_timer_check root=/dev/vda2 ro ds=nocloud-net;s=$seed_url
EOF

# The root partition is the tree plus half again and 256 MiB for logs and packages. qcow2
# stores only what is written, so the spare space costs nothing until the guest uses it.
tree_mib=$(du -sm "$rootfs" | cut -f1)
root_mib=$(((tree_mib * 3 / 2 + 256 + 63) / 64 * 64))
boot_mib=40

boot_part="$work/boot.part"
truncate -s "${boot_mib}M" "$boot_part"
mkfs.fat -F 16 -n BOOT "$boot_part" >/dev/null
syslinux --install "$boot_part"
mcopy -i "$boot_part" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$boot_part" "$work/kernel/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$boot_part" "$work/initrd.gz" ::/initrd.gz

mke2fs -q -t ext4 -L root -E root_owner=0:0 -d "$rootfs" "$work/root.part" "${root_mib}M" >/dev/null

truncate -s "$((1 + boot_mib + root_mib))M" "$work/disk.raw"
printf 'label: dos\nstart=2048, size=%d, type=6, bootable\nstart=%d, size=%d, type=83\n' \
  "$((boot_mib * 2048))" "$(((1 + boot_mib) * 2048))" "$((root_mib * 2048))" |
  sfdisk -q "$work/disk.raw"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.part" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.part" of="$work/disk.raw" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none

# Convert next to the output and rename, so a reader never sees a half-written image.
mkdir -p "$(dirname "$output")"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$partial"
mv "$partial" "$output"
echo "$inputs" >"$stamp"
echo "$output"
