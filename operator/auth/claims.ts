/**
 * NATS decentralized-auth claims (JWTs) for Drover: one operator, the system
 * account, the `DROVER` account (the operator service, the KV buckets) and the
 * `DROVER_DEVICES` account (every device, no JetStream). Devices reach the
 * `DROVER` account only through the exports in {@linkcode DEVICE_BRIDGES};
 * docs/security.md explains why. Encoding is deterministic apart from the
 * issue time; no file I/O.
 *
 * @module
 */

import {
  encodeAccount,
  encodeActivation,
  encodeOperator,
  encodeUser,
  type Export,
  type Import,
  type KeyPair,
} from "@nats-io/jwt";
import { connectionGuardSubjects, DEVICE_USER_PREFIX, OPERATOR_USER_NAME } from "@drover/contracts";
import {
  DEVICE_BRIDGES,
  DEVICE_EXPORTS,
  type DeviceBridge,
  devicePermissions,
} from "./permissions.ts";

/** Name of the NATS account of the operator service and the KV buckets. */
export const DROVER_ACCOUNT_NAME = "DROVER";
/** Name of the NATS account every device lives in. */
export const DEVICES_ACCOUNT_NAME = "DROVER_DEVICES";
/** Name of the NATS system account. */
export const SYSTEM_ACCOUNT_NAME = "SYS";
/** Name of the NATS operator. */
export const OPERATOR_NAME = "drover";

/**
 * Limits sized for a fleet. Every limit of an account JWT is spelled out: an
 * omitted core limit counts as 0 on nats-server 2.9 (no connection allowed).
 */
export interface FleetLimits {
  /** Devices connected at once (the devices' account connection limit). */
  maxDevices: number;
  /** Connections of the `DROVER` account (operator services and CLI runs). */
  maxOperatorConnections: number;
  /** Disk the KV buckets may use, in bytes. */
  storageBytes: number;
}

/** A fleet of the planned size (20 000 devices) with headroom. */
export const DEFAULT_FLEET_LIMITS: Readonly<FleetLimits> = {
  maxDevices: 25_000,
  maxOperatorConnections: 64,
  storageBytes: 10 * 1024 ** 3,
};

/**
 * Largest message a device may publish: its status (the agent keeps it far
 * smaller; a KV value may be at most 1 MiB, which only the operator needs).
 */
export const DEVICE_MAX_PAYLOAD_BYTES = 256 * 1024;
/** Subscriptions of one device connection: its request inbox and its desired-state changes. */
export const DEVICE_MAX_SUBSCRIPTIONS = 8;
/** Largest message in the `DROVER` account (a manifest or desired state: KV's 1 MiB cap). */
export const DROVER_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Streams of the `DROVER` account: Drover's buckets and a few spare. */
export const DROVER_MAX_STREAMS = 16;
/** Consumers of the `DROVER` account: the operators' watches and CLI runs, never per device. */
export const DROVER_MAX_CONSUMERS = 1_000;

/** The system account's limits: unlimited core, no JetStream (the server refuses it there). */
const SYSTEM_LIMITS = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
} as const;

/**
 * The devices' account connection pool: one per device plus headroom, max(16, 5 %). With
 * `operator serve`'s connection guard closing a device's connections beyond its own few within
 * tens of milliseconds, the headroom is what lets other devices in while those closes are in
 * flight.
 * docs/security.md ("Limits") gives the reason and the file-descriptor budget it must fit.
 */
export function devicesAccountConnections(maxDevices: number): number {
  return maxDevices + Math.max(16, Math.ceil(maxDevices * 0.05));
}

/** Core and JetStream limits of the `DROVER` account. */
export function droverAccountLimits(limits: FleetLimits) {
  return {
    subs: -1,
    data: -1,
    payload: DROVER_MAX_PAYLOAD_BYTES,
    imports: DEVICE_EXPORTS.length,
    exports: DEVICE_BRIDGES.length,
    wildcards: true,
    conn: limits.maxOperatorConnections,
    leaf: -1,
    mem_storage: 0,
    disk_storage: limits.storageBytes,
    streams: DROVER_MAX_STREAMS,
    consumer: DROVER_MAX_CONSUMERS,
  };
}

/**
 * Core limits of the devices' account. No JetStream limit is given, which
 * leaves JetStream disabled there: no stream, consumer or API exists for a
 * device to reach.
 */
export function devicesAccountLimits(limits: FleetLimits) {
  return {
    subs: limits.maxDevices * DEVICE_MAX_SUBSCRIPTIONS,
    data: -1,
    payload: DEVICE_MAX_PAYLOAD_BYTES,
    imports: DEVICE_BRIDGES.length,
    exports: DEVICE_EXPORTS.length,
    // The heartbeat export names every device with one wildcard (`drover.heartbeat.*`).
    wildcards: true,
    conn: devicesAccountConnections(limits.maxDevices),
    leaf: 0,
  };
}

/** A service export's `response_threshold` (nanoseconds in the JWT), if it has one. */
function responseThreshold(b: DeviceBridge): { response_threshold?: number } {
  return b.responseThresholdMs === undefined
    ? {}
    : { response_threshold: b.responseThresholdMs * 1_000_000 };
}

/** The keys that sign everything; loaded from the seeds in the auth directory. */
export interface SigningKeys {
  /** Signs the account JWTs (operator identity key). */
  operator: KeyPair;
  /** Identity of the system account. */
  systemAccount: KeyPair;
  /** Identity of the `DROVER` account; also signs the devices' activation tokens. */
  account: KeyPair;
  /** Signs user JWTs for the `DROVER` account, so the account identity key is only needed to rotate it. */
  accountSigning: KeyPair;
  /** Identity of the `DROVER_DEVICES` account. */
  devicesAccount: KeyPair;
  /** Signs the devices' user JWTs. */
  devicesAccountSigning: KeyPair;
}

/** Revoked user public keys → unix seconds; JWTs issued up to then are refused. */
export type Revocations = Record<string, number>;

/** The operator JWT, naming the system account. */
export function encodeOperatorJwt(keys: SigningKeys): Promise<string> {
  return encodeOperator(OPERATOR_NAME, keys.operator, {
    system_account: keys.systemAccount.getPublicKey(),
  });
}

/** The system account JWT. */
export function encodeSystemAccountJwt(keys: SigningKeys): Promise<string> {
  return encodeAccount(SYSTEM_ACCOUNT_NAME, keys.systemAccount, {
    limits: { ...SYSTEM_LIMITS },
  }, { signer: keys.operator });
}

/**
 * The `DROVER` account JWT. Its exports are private (`token_req`): only an
 * account holding an activation token signed by `DROVER` — the devices'
 * account — may import them. It imports the devices' heartbeats
 * ({@linkcode DEVICE_EXPORTS}) with activation tokens the devices' account signs.
 */
export async function encodeDroverAccountJwt(
  keys: SigningKeys,
  limits: FleetLimits,
): Promise<string> {
  const exports: Export[] = DEVICE_BRIDGES.map((b) => ({
    name: b.name,
    subject: b.subject,
    type: b.type,
    token_req: true,
    ...(b.type === "service" ? { response_type: "Singleton" as const } : {}),
    ...responseThreshold(b),
  }));
  const imports: Import[] = [];
  for (const bridge of DEVICE_EXPORTS) {
    imports.push({
      name: bridge.name,
      subject: bridge.subject,
      type: bridge.type,
      account: keys.devicesAccount.getPublicKey(),
      token: await encodeActivation(
        bridge.name,
        keys.account.getPublicKey(),
        keys.devicesAccount,
        bridge.type,
        { subject: bridge.subject },
      ),
    });
  }
  return await encodeAccount(DROVER_ACCOUNT_NAME, keys.account, {
    limits: droverAccountLimits(limits),
    signing_keys: [keys.accountSigning.getPublicKey()],
    exports,
    imports,
  }, { signer: keys.operator });
}

/** The `DROVER_DEVICES` account JWT: the imports, the limits, the devices' revocations. */
export async function encodeDevicesAccountJwt(
  keys: SigningKeys,
  limits: FleetLimits,
  revocations: Revocations,
): Promise<string> {
  const imports: Import[] = [];
  for (const bridge of DEVICE_BRIDGES) {
    imports.push({
      name: bridge.name,
      subject: bridge.subject,
      type: bridge.type,
      account: keys.account.getPublicKey(),
      token: await encodeActivation(
        bridge.name,
        keys.devicesAccount.getPublicKey(),
        keys.account,
        bridge.type,
        { subject: bridge.subject },
      ),
    });
  }
  // Private exports: only DROVER, with the activation token above, may import them.
  const exports: Export[] = DEVICE_EXPORTS.map((b) => ({
    name: b.name,
    subject: b.subject,
    type: b.type,
    token_req: true,
    ...responseThreshold(b),
  }));
  return await encodeAccount(DEVICES_ACCOUNT_NAME, keys.devicesAccount, {
    limits: devicesAccountLimits(limits),
    signing_keys: [keys.devicesAccountSigning.getPublicKey()],
    imports,
    exports,
    ...(Object.keys(revocations).length > 0 ? { revocations: { ...revocations } } : {}),
  }, { signer: keys.operator });
}

/** JWT of the operator service's user: unrestricted within the `DROVER` account. */
export function encodeOperatorUserJwt(keys: SigningKeys, user: KeyPair): Promise<string> {
  return encodeUser(OPERATOR_USER_NAME, user, keys.account.getPublicKey(), {}, {
    signer: keys.accountSigning,
  });
}

/** Name of the system-account user of `operator serve`'s connection guard. */
export const CONNECTION_GUARD_USER_NAME = "drover-connection-guard";

/**
 * JWT of the connection guard's user in the system account: only the devices' account's connect
 * events, the servers' CONNZ and KICK, and its own inbox ({@linkcode connectionGuardSubjects}) —
 * not the rest of what the system account may do (reloads, other accounts' events, …).
 */
export function encodeConnectionGuardUserJwt(keys: SigningKeys, user: KeyPair): Promise<string> {
  const subjects = connectionGuardSubjects(keys.devicesAccount.getPublicKey());
  return encodeUser(CONNECTION_GUARD_USER_NAME, user, keys.systemAccount, {
    pub: { allow: subjects.pub },
    sub: { allow: subjects.sub },
    subs: -1,
    payload: -1,
    data: -1,
    allowed_connection_types: ["STANDARD"],
  });
}

/** Options of {@linkcode encodeDeviceUserJwt}. */
export interface DeviceJwtOptions {
  /** Unix seconds after which the server refuses the creds; absent = never. */
  expiresAt?: number;
}

/** JWT of a device's user in the devices' account: only the subjects of {@linkcode devicePermissions}. */
export function encodeDeviceUserJwt(
  keys: SigningKeys,
  deviceId: string,
  user: KeyPair,
  options: DeviceJwtOptions = {},
): Promise<string> {
  const { pub, sub, resp } = devicePermissions(deviceId);
  return encodeUser(`${DEVICE_USER_PREFIX}${deviceId}`, user, keys.devicesAccount.getPublicKey(), {
    pub,
    sub,
    // The JWT's ttl is a Go duration: nanoseconds.
    resp: { max: resp.max, ttl: resp.ttlMs * 1_000_000 },
    subs: DEVICE_MAX_SUBSCRIPTIONS,
    payload: DEVICE_MAX_PAYLOAD_BYTES,
    data: -1,
    // Devices are plain clients: no websocket, MQTT or leafnode connections.
    allowed_connection_types: ["STANDARD"],
  }, {
    signer: keys.devicesAccountSigning,
    ...(options.expiresAt !== undefined ? { exp: options.expiresAt } : {}),
  });
}

/** What goes into `nats-auth.conf`. */
export interface AuthConfInput {
  operatorJwt: string;
  systemAccountPublicKey: string;
  /** Account public key → account JWT. */
  accountJwts: Record<string, string>;
}

/**
 * The config fragment that nats-server `include`s. It holds only public JWTs,
 * no secret, so it may be readable by the server's user.
 */
export function renderAuthConf(input: AuthConfInput): string {
  const preload = Object.entries(input.accountJwts)
    .map(([pub, jwt]) => `  ${pub}: "${jwt}"`)
    .join("\n");
  return [
    "# Generated by `operator auth init|device revoke` (Drover). Do not edit by hand:",
    "# it is rewritten whenever a device is revoked. After a rewrite, reload the server",
    "# (`nats-server --signal reload` or SIGHUP) so it picks up the new account JWT.",
    `operator: "${input.operatorJwt}"`,
    `system_account: "${input.systemAccountPublicKey}"`,
    "resolver: MEMORY",
    "resolver_preload: {",
    preload,
    "}",
    "",
  ].join("\n");
}
