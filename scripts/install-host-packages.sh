#!/usr/bin/env bash
# Installs the Debian packages that tstack's server, agent and tests use, skipping those already
# present. Safe to run again. Needs root and Debian's apt repositories.
set -euo pipefail

packages=(
  # Management node databases: PostgreSQL runs in the tests beside the embedded SQLite.
  postgresql
  # Host agent: QEMU, qcow2 tools and Linux networking.
  qemu-system-x86 qemu-utils dnsmasq-base nftables iproute2 socat iputils-ping
  # Guest image builder: kernel, busybox userland and a bootloader, all without a mount.
  busybox-static syslinux syslinux-common mtools dosfstools e2fsprogs fdisk cpio kmod
  genisoimage
  # Debian cloud image builder: a bookworm root tree from the apt mirror.
  debootstrap
  # SSH path of adding hosts, tested against an sshd in a network namespace.
  openssh-server openssh-client
  # Container hosts: runc runs each container from an OCI bundle; xz-utils unpacks tar.xz images.
  runc xz-utils
  # Benchmarks: a load generator that is not the bottleneck on two cores.
  wrk
  # CLI tests: the generated zsh completion is loaded and run in a real zsh.
  zsh
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
