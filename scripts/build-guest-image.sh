#!/usr/bin/env bash
# Builds the small test guest image: a Debian cloud kernel, a busybox userland and SYSLINUX on a
# qcow2 disk of about 20 MiB. It uses Debian packages only and mounts nothing, so it also runs on
# hosts that cannot mount vfat or use loop partitions.
#
# Layout: MBR + SYSLINUX, partition 1 FAT16 (kernel, stage-1 initramfs), partition 2 ext4 root
# filled by `mke2fs -d`, mounted read-only by the guest. The guest's init prints
# `TSTACK-GUEST: <event>` lines on ttyS0:
#   boot-ok            init is running and the ACPI power button is armed
#   ip=<addr>          eth0 got a DHCP lease (dhcp-failed otherwise, nothing without a NIC)
#   userdata-ok        http://169.254.169.254/latest/user-data was a script and exited 0
#   userdata-failed rc=<n> / userdata-none
# The guest panics on an NMI (QMP inject-nmi) and tells QEMU through the pvpanic device, so tests
# can crash it on purpose.
#
# Usage: build-guest-image.sh [--output PATH]
# The image is rebuilt only when this script or a package version changed; the path is printed.
# Needs root (mknod for the initramfs console), apt, and the packages in install-host-packages.sh.
set -euo pipefail

output=/var/cache/tstack/images/tstack-guest.qcow2

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
      echo "build-guest-image.sh: unknown option '$1'. Usage: build-guest-image.sh [--output PATH]" >&2
      exit 2
      ;;
  esac
done

# Modules the guest loads. The Debian cloud kernel builds virtio, the ACPI button and evdev as
# modules, while ext4, devtmpfs and the 8250 serial console are built in.
stage1_modules=(virtio_pci virtio_blk)
root_modules=(virtio_pci virtio_blk virtio_net button evdev pvpanic-mmio)

# The metapackage names the current kernel package, e.g. linux-image-6.1.0-57-cloud-amd64.
kernel_package=$(apt-cache depends linux-image-cloud-amd64 |
  sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)

if [ -z "$kernel_package" ]; then
  echo "build-guest-image.sh: cannot resolve linux-image-cloud-amd64. Run apt-get update" >&2
  exit 1
fi

kernel_version=$(apt-cache policy "$kernel_package" | sed -n 's/^ *Candidate: //p')
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static)
syslinux_version=$(dpkg-query -W -f='${Version}' syslinux)
script_hash=$(sha256sum "$0" | cut -d' ' -f1)
inputs="$script_hash $kernel_package=$kernel_version busybox=$busybox_version syslinux=$syslinux_version"
stamp="$output.inputs"

if [ -f "$output" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "$output"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tstack-guest-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. Kernel: fetched and unpacked, never installed on the host.
mkdir -p "$work/deb" "$work/kernel"
(cd "$work/deb" && apt-get download -q "$kernel_package" >/dev/null 2>"$work/apt.err") || {
  cat "$work/apt.err" >&2
  echo "build-guest-image.sh: apt-get download $kernel_package failed. Check the apt sources" >&2
  exit 1
}
dpkg -x "$work"/deb/*.deb "$work/kernel"
kver=$(basename "$(ls -d "$work"/kernel/lib/modules/*)")
depmod -b "$work/kernel" "$kver"

# Copies the named modules and every module they depend on into a root tree, then writes a
# modules.dep there so busybox modprobe in the guest resolves the same order.
copy_modules() {
  local root="$1"
  shift
  local module file

  for module in "$@"; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$module" |
      sed -n 's/^insmod \([^ ]*\).*/\1/p' |
      while read -r file; do
        local relative="${file#"$work/kernel"}"
        mkdir -p "$root$(dirname "$relative")"
        cp "$file" "$root$relative"
      done
  done

  cp "$work/kernel/lib/modules/$kver/modules.order" "$work/kernel/lib/modules/$kver/modules.builtin" \
    "$work/kernel/lib/modules/$kver/modules.builtin.modinfo" \
    "$root/lib/modules/$kver/"
  depmod -b "$root" "$kver"
}

# Fills a directory with busybox and one symlink per applet.
install_busybox() {
  local root="$1"
  local applet

  mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
  cp /bin/busybox "$root/bin/busybox"

  # Relative targets, so that writing through a link while building never reaches the host's
  # own /bin/busybox.
  for applet in $(/bin/busybox --list-full); do
    case "$applet" in
      bin/busybox) ;;
      bin/*) ln -sf busybox "$root/$applet" ;;
      sbin/*) ln -sf ../bin/busybox "$root/$applet" ;;
      usr/*/*) ln -sf ../../bin/busybox "$root/$applet" ;;
      */*)
        echo "build-guest-image.sh: unexpected busybox applet path $applet" >&2
        exit 1
        ;;
      *) ln -sf bin/busybox "$root/$applet" ;;
    esac
  done
}

# 2. Stage-1 initramfs: loads the virtio disk driver, mounts the root partition read-only and
# switches to it.
initramfs="$work/initramfs"
install_busybox "$initramfs"
mkdir -p "$initramfs/dev" "$initramfs/proc" "$initramfs/sys" "$initramfs/newroot"
mknod -m 600 "$initramfs/dev/console" c 5 1
copy_modules "$initramfs" "${stage1_modules[@]}"
cat >"$initramfs/init" <<'EOF'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
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
  echo "TSTACK-GUEST: root-mount-failed root=$root"
  exec sh
fi

mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /sbin/init
EOF
chmod 755 "$initramfs/init"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/initrd.gz"

# 3. Root filesystem: busybox, the modules, and an init that reports on the serial console.
rootfs="$work/rootfs"
install_busybox "$rootfs"
mkdir -p "$rootfs"/{dev,proc,sys,run,tmp,root,etc/acpi/PWRF,usr/share/udhcpc}
copy_modules "$rootfs" "${root_modules[@]}"
ln -s /run/resolv.conf "$rootfs/etc/resolv.conf"
echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
echo "root:x:0:" >"$rootfs/etc/group"

# /sbin/init is a busybox applet link; replace the link, not its target.
rm -f "$rootfs/sbin/init"
cat >"$rootfs/sbin/init" <<'EOF'
#!/bin/sh
# PID 1 of the tstack test guest. The root filesystem is read-only, so powering off without
# unmounting is safe; writable state lives in tmpfs under /run and /tmp.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
hostname tstack-guest

say() {
  echo "TSTACK-GUEST: $*" >/dev/console
}

# busybox acpid reads /dev/input/event*, which exist only after the button and evdev modules
# load; starting it earlier leaves the power button ignored.
modprobe button
modprobe evdev
modprobe pvpanic-mmio 2>/dev/null
echo 1 >/proc/sys/kernel/unknown_nmi_panic
tries=0
while ! ls /dev/input/event* >/dev/null 2>&1 && [ "$tries" -lt 50 ]; do
  sleep 0.1
  tries=$((tries + 1))
done
acpid -c /etc/acpi -l /run/acpid.log

say "boot-ok uptime=$(cut -d' ' -f1 /proc/uptime)"

# Fetches the user data from the metadata address and runs it when it is a script.
run_user_data() {
  # busybox-static 1.35.0 (Debian 1:1.35.0-4+deb12u1) wget crashes with SIGSEGV when given -T,
  # so the timeout applet bounds the fetch instead.
  if ! timeout 5 wget -q -O /run/user-data http://169.254.169.254/latest/user-data \
    2>/run/wget.err; then
    say "userdata-none $(head -n 1 /run/wget.err)"
    return
  fi

  if [ "$(head -c 2 /run/user-data)" != "#!" ]; then
    say "userdata-none not a script"
    return
  fi

  chmod 700 /run/user-data
  if /run/user-data >/run/user-data.log 2>&1; then
    say "userdata-ok"
  else
    say "userdata-failed rc=$?"
  fi
}

modprobe virtio_net 2>/dev/null
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up
  ip link set eth0 up
  if udhcpc -i eth0 -n -t 5 -T 2 -O mtu -O staticroutes -O hostname -s /usr/share/udhcpc/default.script -p /run/udhcpc.pid \
    >/run/udhcpc.log 2>&1; then
    say "ip=$(cat /run/ip)"
    run_user_data
  else
    say "dhcp-failed"
  fi
fi

while true; do
  sleep 3600
done
EOF
chmod 755 "$rootfs/sbin/init"

cat >"$rootfs/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "TSTACK-GUEST: power-button" >/dev/console
sync
poweroff -f
EOF
chmod 755 "$rootfs/etc/acpi/PWRF/00000080"

cat >"$rootfs/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# Called by udhcpc with the lease in the environment (interface, ip, mask, router, dns, mtu,
# staticroutes, hostname). Classless static routes (option 121) replace the router option, as
# RFC 3442 says; they carry the route to the metadata address 169.254.169.254.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ;;
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ "$#" -ge 2 ]; do
        if [ "$2" = "0.0.0.0" ]; then
          ip route add "$1" dev "$interface"
        else
          ip route add "$1" via "$2" dev "$interface"
        fi
        shift 2
      done
    else
      for gateway in $router; do
        ip route add default via "$gateway" dev "$interface"
        break
      done
    fi
    [ -n "$hostname" ] && hostname "$hostname"
    : >/run/resolv.conf
    for server in $dns; do
      echo "nameserver $server" >>/run/resolv.conf
    done
    echo "$ip" >/run/ip
    ;;
esac
exit 0
EOF
chmod 755 "$rootfs/usr/share/udhcpc/default.script"

# 4. Partitions, written into a raw disk without mounting, then converted to qcow2.
cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0 no_timer_check quiet root=/dev/vda2
EOF

truncate -s 73M "$work/disk.raw"
printf 'label: dos\nstart=2048, size=81920, type=6, bootable\nstart=83968, size=65536, type=83\n' |
  sfdisk -q "$work/disk.raw"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

truncate -s 40M "$work/boot.part"
mkfs.fat -F 16 -n BOOT "$work/boot.part" >/dev/null
syslinux --install "$work/boot.part"
mcopy -i "$work/boot.part" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$work/boot.part" "$work/kernel/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$work/boot.part" "$work/initrd.gz" ::/initrd.gz

mke2fs -q -t ext4 -L root -E root_owner=0:0 -d "$rootfs" "$work/root.part" 32M >/dev/null

dd if="$work/boot.part" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.part" of="$work/disk.raw" bs=1M seek=41 conv=notrunc,sparse status=none

# Convert next to the output and rename, so a reader never sees a half-written image.
mkdir -p "$(dirname "$output")"
partial="$output.partial.$$"
trap 'rm -rf "$work" "$partial"' EXIT
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$partial"
mv "$partial" "$output"
echo "$inputs" >"$stamp"
echo "$output"
