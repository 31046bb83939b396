#!/usr/bin/env bash
# Checks that the programs Drover's tests and smoke run need are installed; installs the missing
# ones on Debian/Ubuntu when running as root, otherwise prints the apt-get command and exits 1.
# Idempotent and silent when everything is present (it only looks at a few paths).
set -euo pipefail

# "what to look for|Debian package that provides it". A check is either an absolute path that
# must be executable or a command name looked up on PATH.
REQUIREMENTS=(
  "nats-server|nats-server"
  "podman|podman"
  "runc|runc"
  "/bin/busybox|busybox-static"
  "docker-registry|docker-registry"
  "htpasswd|apache2-utils"
  "openssl|openssl"
  "qemu-aarch64-static|qemu-user-static"
  # tests/e2e/aarch64_test.ts runs the arm64 Deno under qemu-aarch64-static: it needs arm64 libc.
  "/lib/ld-linux-aarch64.so.1|libc6:arm64"
  "/lib/aarch64-linux-gnu/libgcc_s.so.1|libgcc-s1:arm64"
  "systemd-analyze|systemd"
  # tests/e2e/device_commands_test.ts: promtool check metrics, and a real server scraping.
  "promtool|prometheus"
  # Used by the podman test harness (bridge cleanup) and by netavark for port publishing.
  "ip|iproute2"
  "iptables|iptables"
  # The podman 5.4 test pass builds a Debian trixie root with it (tests/support/_podman_trixie.ts).
  "debootstrap|debootstrap"
  # tests/e2e/dashboard_test.ts drives Debian's chromium with playwright-core (never a download).
  "/usr/bin/chromium|chromium"
)

is_present() {
  local what="$1"
  if [[ "$what" == *.so.* ]]; then
    [[ -f "$what" ]] # shared libraries need not be executable
  elif [[ "$what" == /* ]]; then
    [[ -x "$what" ]]
  else
    command -v "$what" >/dev/null 2>&1
  fi
}

# /bin/busybox must be the static build: the test image copies it into an empty rootfs.
busybox_is_static() {
  [[ -x /bin/busybox ]] || return 1
  # A dynamic ELF names its interpreter (PT_INTERP) as a path string in its first bytes.
  ! head -c 4096 /bin/busybox | grep -aq 'ld-linux'
}

missing_packages=()
for requirement in "${REQUIREMENTS[@]}"; do
  what="${requirement%%|*}"
  package="${requirement##*|}"
  if ! is_present "$what"; then
    echo "prereqs: missing ${what} (Debian package ${package})"
    missing_packages+=("$package")
  elif [[ "$what" == /bin/busybox ]] && ! busybox_is_static; then
    echo "prereqs: /bin/busybox is not statically linked (Debian package busybox-static)"
    missing_packages+=("$package")
  fi
done

if [[ ${#missing_packages[@]} -eq 0 ]]; then
  exit 0
fi

install_command="apt-get install -y ${missing_packages[*]}"
if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prereqs: cannot install automatically (needs root on Debian/Ubuntu). Run:"
  add_arch=""
  if [[ " ${missing_packages[*]} " == *":arm64 "* ]]; then add_arch="sudo dpkg --add-architecture arm64 && "; fi
  echo "  ${add_arch}sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${install_command}"
  exit 1
fi

# The docker-registry package ships an init script that would start a registry on :5000 (all
# interfaces). Tests run their own registry on a free loopback port, so keep package scripts from
# starting any service during this install (policy-rc.d exit 101 = "action forbidden").
policy_file=/usr/sbin/policy-rc.d
created_policy=false
if [[ ! -e "$policy_file" ]]; then
  printf '#!/bin/sh\n# Temporary, written by drover scripts/prereqs.sh\nexit 101\n' >"$policy_file"
  chmod 755 "$policy_file"
  created_policy=true
fi
remove_policy() {
  if [[ "$created_policy" == true ]]; then rm -f "$policy_file"; fi
}
trap remove_policy EXIT

echo "prereqs: installing ${missing_packages[*]} with apt-get"
# arm64 packages (libc6:arm64 …) install only once dpkg knows the foreign architecture.
if [[ " ${missing_packages[*]} " == *":arm64 "* && "$(dpkg --print-foreign-architectures)" != *arm64* ]]; then
  echo "prereqs: adding the arm64 architecture to dpkg"
  dpkg --add-architecture arm64
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}" >/dev/null

# If a registry service was started anyway (e.g. policy-rc.d was present but permissive), stop
# it: it listens on every interface and is not used by anything here.
if [[ " ${missing_packages[*]} " == *" docker-registry "* ]] && [[ -x /etc/init.d/docker-registry ]]; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

still_missing=0
for requirement in "${REQUIREMENTS[@]}"; do
  what="${requirement%%|*}"
  if ! is_present "$what"; then
    echo "prereqs: ${what} is still missing after the install"
    still_missing=1
  fi
done
exit "$still_missing"
