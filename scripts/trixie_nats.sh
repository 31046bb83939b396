#!/usr/bin/env bash
# Fetches nats-server from Debian trixie (2.10.x) into DIR without touching the system: a private
# apt state, the same mirror as the machine's own Debian sources, `apt-get download` and
# `dpkg -x`. Prints the path of the binary. Idempotent: an existing DIR/usr/sbin/nats-server is
# reused. Used by the NATS server matrix (tests and the fleet bench run on 2.9 and 2.10).
#
# Usage: scripts/trixie_nats.sh DIR
set -euo pipefail

dir="${1:?usage: scripts/trixie_nats.sh DIR}"
# apt resolves relative Dir::Etc paths against /etc/apt, so every path handed to it is absolute.
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
bin="$dir/usr/sbin/nats-server"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

# The machine's own Debian mirror (deb822 or one-line sources), never a hard-coded host.
mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  mirror="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
    /etc/apt/sources.list.d/debian.sources)"
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
    /etc/apt/sources.list)"
fi
if [[ -z "$mirror" ]]; then
  echo "trixie_nats: cannot find the machine's Debian mirror in /etc/apt/sources*" >&2
  exit 1
fi

state="$dir/apt"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$dir/deb"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
  >"$state/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$state/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$state/lists"
  -o "Dir::Cache=$state/cache"
  -o "APT::Get::List-Cleanup=0"
)
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$dir/deb" && apt-get "${apt_opts[@]}" -qq download nats-server >&2)
dpkg -x "$dir"/deb/nats-server_*.deb "$dir"
"$bin" --version >&2
echo "$bin"
