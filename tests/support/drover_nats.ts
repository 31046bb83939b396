/**
 * Drover's NATS account layout for tests that need devices but not JWTs: the
 * same two accounts, exports/imports and per-device permissions that
 * `operator auth init` signs into JWTs (built from the same
 * `DEVICE_BRIDGES`/`devicePermissions`), written as plain nats-server config
 * with passwords. The JWT path itself is covered by tests/e2e/security_*.
 *
 * @module
 */

import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { BUCKET_DESIRED_STATE } from "@drover/contracts";
import {
  DEVICE_BRIDGES,
  DEVICE_EXPORTS,
  deviceInboxPrefix,
  devicePermissions,
} from "../../operator/auth/permissions.ts";
import { DesiredSnapshotService } from "../../operator/devices/snapshots.ts";
import { type NatsServer, startNats, type StartNatsOptions } from "./nats.ts";

/** The `DROVER` account's test user: may do anything there. */
export const ADMIN_USER = { user: "admin", password: "admin-pw" } as const;
/** Every test device's password (its user name is its id). */
export const DEVICE_PASSWORD = "device-pw";

/** nats-server `accounts {}` block with the `DROVER` and `DROVER_DEVICES` accounts. */
export function droverAccountsConfig(devices: readonly string[]): string {
  const users = devices.map((id) => {
    const { pub, sub, resp } = devicePermissions(id);
    return `      { user: ${JSON.stringify(id)}, password: ${
      JSON.stringify(DEVICE_PASSWORD)
    }, permissions: { publish: { allow: ${JSON.stringify(pub.allow)} }, subscribe: { allow: ${
      JSON.stringify(sub.allow)
    } }, allow_responses: { max: ${resp.max}, expires: "${resp.ttlMs}ms" } } }`;
  });
  const threshold = (b: { responseThresholdMs?: number }) =>
    b.responseThresholdMs === undefined ? "" : `, response_threshold: "${b.responseThresholdMs}ms"`;
  const exports = DEVICE_BRIDGES.map((b) =>
    `      { ${b.type}: ${JSON.stringify(b.subject)}, accounts: [DROVER_DEVICES]${threshold(b)} }`
  );
  const imports = DEVICE_BRIDGES.map((b) =>
    `      { ${b.type}: { account: DROVER, subject: ${JSON.stringify(b.subject)} } }`
  );
  // The reverse direction (heartbeats): the devices' account exports, DROVER imports.
  const reverseExports = DEVICE_EXPORTS.map((b) =>
    `      { ${b.type}: ${JSON.stringify(b.subject)}, accounts: [DROVER]${threshold(b)} }`
  );
  const reverseImports = DEVICE_EXPORTS.map((b) =>
    `      { ${b.type}: { account: DROVER_DEVICES, subject: ${JSON.stringify(b.subject)} } }`
  );
  return [
    "accounts {",
    "  DROVER {",
    "    jetstream: enabled",
    `    users: [ { user: ${JSON.stringify(ADMIN_USER.user)}, password: ${
      JSON.stringify(ADMIN_USER.password)
    } } ]`,
    "    exports: [",
    ...exports,
    "    ]",
    "    imports: [",
    ...reverseImports,
    "    ]",
    "  }",
    "  DROVER_DEVICES {",
    "    users: [",
    ...users,
    "    ]",
    "    imports: [",
    ...imports,
    "    ]",
    "    exports: [",
    ...reverseExports,
    "    ]",
    "  }",
    "}",
  ].join("\n");
}

/** A nats-server with Drover's accounts for the given devices. */
export function startDroverNats(
  devices: readonly string[],
  options: Omit<StartNatsOptions, "extraConfig"> & { extraConfig?: string } = {},
): Promise<NatsServer> {
  return startNats({
    ...options,
    extraConfig: [droverAccountsConfig(devices), options.extraConfig ?? ""].join("\n"),
  });
}

/** Connects as the `DROVER` account's admin. */
export function connectAdmin(
  url: string,
  extra: Partial<NodeConnectionOptions> = {},
): Promise<NatsConnection> {
  return connect({ servers: url, user: ADMIN_USER.user, pass: ADMIN_USER.password, ...extra });
}

/** Connects as device `id` with its inbox prefix, as the agent does. */
export function connectDevice(url: string, id: string): Promise<NatsConnection> {
  return connect({
    servers: url,
    user: id,
    pass: DEVICE_PASSWORD,
    inboxPrefix: deviceInboxPrefix(id),
  });
}

/**
 * The operator's real snapshot service on an admin connection, for tests that
 * write desired state themselves instead of running `operator serve`.
 */
export async function startSnapshotService(nc: NatsConnection): Promise<DesiredSnapshotService> {
  const kv = await new Kvm(nc).open(BUCKET_DESIRED_STATE);
  const service = new DesiredSnapshotService(nc, kv);
  void service.start();
  return service;
}
