/**
 * The Deno permissions a config needs, checked before anything starts.
 *
 * The agent runs with narrow `--allow-*` flags (see the `agent` task in
 * deno.json). Paths and NATS servers come from the config, so a config can
 * ask for more than the flags grant; without this check that shows up as an
 * endless "cannot connect" loop. With it, the agent stops at once and prints
 * the flags to add.
 *
 * @module
 */

import type { AgentConfig } from "@drover/contracts";
import { NOTIFY_SENDER_SOCKET_NAME } from "./systemd.ts";

/** Default NATS client port. */
const DEFAULT_NATS_PORT = 4222;

/**
 * Fetch over podman's unix socket checks net access to the URL's host too;
 * the podman client addresses it as `http://libpod/`.
 */
export const PODMAN_URL_HOST = "libpod:80";

/** One permission the config needs. */
export interface RequiredPermission {
  descriptor: Deno.PermissionDescriptor;
  /** The flag that grants it, e.g. `--allow-net=nats.example.com:4222`. */
  flag: string;
  /** Which config setting needs it. */
  reason: string;
}

/** `host:port` of a NATS server URL as Deno's net permission names it. Pure. */
export function natsHostPort(server: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `nats://${server}`;
  const url = new URL(withScheme);
  return `${url.hostname}:${url.port === "" ? DEFAULT_NATS_PORT : url.port}`;
}

/** Every permission `config` needs to run. Pure. */
export function requiredPermissions(config: AgentConfig): RequiredPermission[] {
  const out: RequiredPermission[] = [];
  const read = (path: string, reason: string) =>
    out.push({ descriptor: { name: "read", path }, flag: `--allow-read=${path}`, reason });
  const write = (path: string, reason: string) =>
    out.push({ descriptor: { name: "write", path }, flag: `--allow-write=${path}`, reason });
  const net = (host: string, reason: string) =>
    out.push({ descriptor: { name: "net", host }, flag: `--allow-net=${host}`, reason });

  const stateDir = config.agent.state_dir;
  read(stateDir, "[agent] state_dir");
  write(stateDir, "[agent] state_dir");
  const socket = config.podman.socket;
  read(socket, "[podman] socket");
  write(socket, "[podman] socket");
  net(`unix:${socket}`, "[podman] socket");
  net(PODMAN_URL_HOST, "[podman] socket (requests are addressed to http://libpod/)");
  for (const server of config.nats.servers) {
    let hostPort: string;
    try {
      hostPort = natsHostPort(server);
    } catch {
      continue; // not a URL: the NATS client reports it with the server named
    }
    net(hostPort, `[nats] servers (${server})`);
  }
  for (const key of ["creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key"] as const) {
    const path = config.nats[key];
    if (path !== undefined) read(path, `[nats] ${key}`);
  }
  // Deno names a listening address host:port like an outgoing one.
  const listen = config.metrics?.listen;
  if (listen !== undefined) net(listen.replace(/^\[(.*)\]:/, "$1:"), "[metrics] listen");
  return out;
}

/**
 * Read access to each `[policy] allowed_host_paths` prefix: the agent resolves bind sources
 * below them (`realpath`) before it admits a bind mount. Not part of
 * {@linkcode requiredPermissions}: without it only deployments with bind mounts fail, with a
 * message naming the flag, and the agent runs everything else. Pure.
 */
export function hostPathPermissions(config: AgentConfig): RequiredPermission[] {
  return config.policy.allowed_host_paths.map((path) => ({
    descriptor: { name: "read", path },
    flag: `--allow-read=${path}`,
    reason: "[policy] allowed_host_paths (bind sources are resolved before they are allowed)",
  }));
}

/** Permissions systemd notification needs when `NOTIFY_SOCKET` is set. Pure. */
export function notifyPermissions(
  stateDir: string,
  notifySocket: string | undefined,
): RequiredPermission[] {
  if (notifySocket === undefined || !notifySocket.startsWith("/")) return [];
  const sender = `${stateDir.replace(/\/+$/, "")}/${NOTIFY_SENDER_SOCKET_NAME}`;
  return [
    {
      descriptor: { name: "net", host: `unix:${sender}` },
      flag: `--allow-net=unix:${sender}`,
      reason: "sd_notify (own socket)",
    },
    {
      descriptor: { name: "net", host: `unix:${notifySocket}` },
      flag: `--allow-net=unix:${notifySocket}`,
      reason: "sd_notify (NOTIFY_SOCKET)",
    },
    {
      descriptor: { name: "write", path: notifySocket },
      flag: `--allow-write=${notifySocket}`,
      reason: "sd_notify (NOTIFY_SOCKET)",
    },
  ];
}

/** The subset of `required` that is not granted now. */
export function missingPermissions(required: RequiredPermission[]): RequiredPermission[] {
  return required.filter((p) => {
    try {
      return Deno.permissions.querySync(p.descriptor).state !== "granted";
    } catch {
      return true;
    }
  });
}

/** Human-readable list of missing flags, one per line. Pure. */
export function formatMissing(missing: RequiredPermission[]): string {
  return missing.map((p) => `  ${p.flag}  (${p.reason})`).join("\n");
}
