#!/usr/bin/env bash
# Installs the Drover agent on a device: the executable, /etc/drover/agent.toml (0600), the
# drover-agent.service unit; enables podman.socket and the unit. Safe to run again (upgrades the
# executable and unit, keeps an existing config unless --config is given).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [--binary FILE | --bundle DIR] [--config FILE] [--creds FILE] [--sealing-key FILE] [--root DIR] [--no-start] [--dry-run]

Installs the Drover agent and its systemd unit.

  --binary FILE   the agent executable from `deno task compile`
                  (dist/drover-agent-<target>) -> /usr/local/bin/drover-agent
  --bundle DIR    the alternative artifact from `deno task bundle`: DIR holds
                  drover-agent.bundle.js, drover-agent.sh and deno-<arch> (or give --deno FILE);
                  installed to /usr/local/lib/drover/ with /usr/local/bin/drover-agent as launcher
  --deno FILE     with --bundle: the Deno executable for this device's architecture
  --config FILE   agent config -> /etc/drover/agent.toml (mode 0600). Without it an existing
                  config is kept; on a first install the commented example is installed and the
                  agent is not started until you have edited it.
  --creds FILE    the device's NATS creds (DIR/ID.creds from `operator device add`)
                  -> /etc/drover/nats.creds (mode 0600), the path `device add` writes into
                  the config. Without it existing creds are kept.
  --sealing-key FILE
                  the device's sealing key (DIR/ID.xk from `operator device add`; secrets
                  are sealed to it) -> /etc/drover/sealing.xk (mode 0600), the path
                  `device add` writes into the config. Without it an existing key is kept.
  --root DIR      install into DIR instead of / (image building, tests): files only; units are
                  enabled with `systemctl --root DIR`; nothing is started
  --no-start      enable the units but do not (re)start them
  --dry-run       print what would be done and change nothing
  -h, --help      this help

Run as root. Afterwards: `systemctl status drover-agent`, `journalctl -u drover-agent -f`.
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$script_dir")"

binary=""
bundle_dir=""
deno_bin=""
config=""
creds=""
sealing_key=""
root=""
start=true
dry_run=false

while [[ $# -gt 0 ]]; do
  case "$1" in
  --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
  --bundle) bundle_dir="${2:?--bundle needs a directory}"; shift 2 ;;
  --deno) deno_bin="${2:?--deno needs a file}"; shift 2 ;;
  --config) config="${2:?--config needs a file}"; shift 2 ;;
  --creds) creds="${2:?--creds needs a file}"; shift 2 ;;
  --sealing-key) sealing_key="${2:?--sealing-key needs a file}"; shift 2 ;;
  --root) root="${2:?--root needs a directory}"; shift 2 ;;
  --no-start) start=false; shift ;;
  --dry-run) dry_run=true; shift ;;
  -h | --help) usage; exit 0 ;;
  *)
    echo "install.sh: unknown option: $1" >&2
    usage >&2
    exit 2
    ;;
  esac
done

# --- Decide what to install (no changes yet) -----------------------------------------------------
if [[ -n "$binary" && -n "$bundle_dir" ]]; then die "give either --binary or --bundle, not both"; fi
if [[ -z "$binary" && -z "$bundle_dir" ]]; then
  # Default: the compiled executable for this machine, if `deno task compile` made one.
  candidate="$repo_dir/dist/drover-agent-$(uname -m)-unknown-linux-gnu"
  [[ -x "$candidate" ]] || die "no agent given: pass --binary FILE or --bundle DIR (run \`deno task compile\` or \`deno task bundle\` first)"
  binary="$candidate"
fi
if [[ -n "$binary" ]]; then
  [[ -f "$binary" && -x "$binary" ]] || die "Cannot install --binary $binary: not an executable file"
fi
if [[ -n "$bundle_dir" ]]; then
  [[ -f "$bundle_dir/drover-agent.bundle.js" ]] || die "Cannot use --bundle $bundle_dir: drover-agent.bundle.js is missing"
  [[ -f "$bundle_dir/drover-agent.sh" ]] || die "Cannot use --bundle $bundle_dir: drover-agent.sh is missing"
  if [[ -z "$deno_bin" ]]; then deno_bin="$bundle_dir/deno-$(uname -m)"; fi
  [[ -f "$deno_bin" && -x "$deno_bin" ]] || die "Cannot use Deno executable $deno_bin: not an executable file (give --deno FILE)"
fi
if [[ -n "$config" ]]; then
  [[ -f "$config" ]] || die "Cannot install --config $config: no such file"
fi
if [[ -n "$creds" ]]; then
  [[ -f "$creds" ]] || die "Cannot install --creds $creds: no such file"
fi
if [[ -n "$sealing_key" ]]; then
  [[ -f "$sealing_key" ]] || die "Cannot install --sealing-key $sealing_key: no such file"
fi
if [[ -n "$root" ]]; then
  [[ -d "$root" ]] || die "Cannot install into --root $root: not a directory"
  root="$(cd "$root" && pwd)"
  start=false
elif [[ $EUID -ne 0 && "$dry_run" == false ]]; then
  die "must run as root (or use --root DIR / --dry-run)"
fi

target_bin="$root/usr/local/bin/drover-agent"
target_lib="$root/usr/local/lib/drover"
target_etc="$root/etc/drover"
target_config="$target_etc/agent.toml"
target_creds="$target_etc/nats.creds"
target_sealing_key="$target_etc/sealing.xk"
target_unit="$root/etc/systemd/system/drover-agent.service"

run() {
  echo "+ $*"
  if [[ "$dry_run" == false ]]; then "$@"; fi
}

# Copies to a temp name beside the target, then renames: replacing a running executable in place
# would fail with "Text file busy", and a half-written file is never visible.
install_file() {
  local mode="$1" source="$2" target="$3"
  # Only create missing directories: an existing one keeps its mode (/etc/drover stays 0700).
  if [[ ! -d "$(dirname "$target")" ]]; then run install -d -m 0755 "$(dirname "$target")"; fi
  run install -m "$mode" "$source" "$target.new"
  run mv -f "$target.new" "$target"
}

# --- Files -------------------------------------------------------------------------------------
# The unit's ExecStart: picks the installed agent or a self-updated release (see the launcher).
install_file 0755 "$script_dir/drover-agent-launch" "$target_lib/drover-agent-launch"
if [[ -n "$binary" ]]; then
  install_file 0755 "$binary" "$target_bin"
else
  install_file 0644 "$bundle_dir/drover-agent.bundle.js" "$target_lib/drover-agent.bundle.js"
  install_file 0755 "$deno_bin" "$target_lib/deno"
  install_file 0755 "$bundle_dir/drover-agent.sh" "$target_bin"
fi

run install -d -m 0700 "$target_etc"
installed_example=false
if [[ -n "$config" ]]; then
  install_file 0600 "$config" "$target_config"
elif [[ -e "$target_config" ]]; then
  echo "keeping existing $target_config"
else
  install_file 0600 "$repo_dir/examples/agent.toml" "$target_config"
  installed_example=true
fi
if [[ -n "$creds" ]]; then
  install_file 0600 "$creds" "$target_creds"
fi
if [[ -n "$sealing_key" ]]; then
  install_file 0600 "$sealing_key" "$target_sealing_key"
fi

install_file 0644 "$script_dir/drover-agent.service" "$target_unit"

# --- Units ---------------------------------------------------------------------------------------
if [[ -n "$root" ]]; then
  # Offline enablement: creates the .wants symlinks inside the root; podman.socket only when the
  # root has podman installed.
  units=(drover-agent.service)
  for dir in usr/lib/systemd/system lib/systemd/system etc/systemd/system; do
    if [[ -f "$root/$dir/podman.socket" ]]; then
      units=(podman.socket "${units[@]}")
      break
    fi
  done
  [[ ${#units[@]} -eq 2 ]] || echo "warning: podman.socket not found under $root (install podman there)" >&2
  run systemctl --root="$root" --quiet enable "${units[@]}"
elif [[ ! -d /run/systemd/system ]]; then
  # Not booted with systemd (a container, a chroot): enable for the next boot only.
  run systemctl --quiet enable podman.socket drover-agent.service
  echo "systemd is not running here: units enabled for the next boot, nothing started"
else
  run systemctl daemon-reload
  run systemctl --quiet enable podman.socket drover-agent.service
  if [[ "$start" == true && "$installed_example" == false ]]; then
    run systemctl start podman.socket
    # restart, not start: a re-run after an upgrade must load the new executable.
    run systemctl restart drover-agent.service
  fi
fi

if [[ "$dry_run" == true ]]; then
  echo "Dry run: nothing was changed."
  exit 0
fi
if [[ "$installed_example" == true ]]; then
  echo "Installed the example config: edit $target_config (device_id, [nats] servers, credentials),"
  echo "then run: systemctl restart drover-agent"
fi
echo "Drover agent installed${root:+ into $root}."
