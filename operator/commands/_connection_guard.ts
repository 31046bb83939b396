/**
 * `serve`'s connection guard options: the system account's creds (from
 * --system-creds, DROVER_SYSTEM_CREDS or DIR/system.creds), checked to be
 * the guard's, and the bound of its picture.
 *
 * @module
 */

import { connectEventsAccount, credsIdentity } from "@drover/contracts";
import { OperationError, type OptionValues, stringOption } from "./cli.ts";
import type { ConnectionSettings } from "../nats/connection.ts";
import { AUTH_FILES, DEFAULT_FLEET_LIMITS, devicesAccountConnections } from "../auth/mod.ts";
import { readAuthState } from "../auth/store.ts";

/** `settings` with the guard's creds instead of any other login (servers and TLS kept). */
export function guardConnectionSettings(
  settings: ConnectionSettings,
  creds: string,
): ConnectionSettings {
  const { user: _user, password: _password, token: _token, ...rest } = settings;
  return { ...rest, creds };
}

/** What the connection guard needs, from `serve`'s options; undefined without system creds. */
export interface GuardSettings {
  creds: string;
  /** The devices' account, read from the creds' permissions. */
  account: string;
  limit: number;
  maxTracked: number;
}

/**
 * The guard's settings: the creds from --system-creds, DROVER_SYSTEM_CREDS or DIR/system.creds;
 * the account they may watch; the per-device limit. A creds file that is not the guard's
 * (the operator's, a device's, one naming no account) is a start-up error.
 */
export async function connectionGuardSettings(
  values: OptionValues,
  env: (name: string) => string | undefined,
  dir: string | undefined,
  limit: number,
): Promise<GuardSettings | undefined> {
  let creds = stringOption(values, "system-creds") ?? env("DROVER_SYSTEM_CREDS");
  if (creds === undefined && dir !== undefined) {
    const inDir = `${dir.replace(/\/+$/, "")}/${AUTH_FILES.systemCreds}`;
    if (await Deno.stat(inDir).then(() => true, () => false)) creds = inDir;
  }
  if (creds === undefined) return undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(creds);
  } catch (e) {
    throw new OperationError(`Cannot read system creds ${creds}: ${(e as Error).message}`, [], {
      cause: e,
    });
  }
  const account = connectEventsAccount(text);
  if (account === undefined) {
    const identity = credsIdentity(text);
    const whose = identity?.kind === "operator"
      ? "the operator's creds"
      : identity?.kind === "device"
      ? `device "${identity.device}"'s creds`
      : "no connection guard's creds";
    throw new OperationError(`${creds} holds ${whose}: --system-creds needs the guard's`, [
      "operator auth init wrote them to DIR/system.creds; for an older auth directory: " +
      "operator auth system-creds --dir DIR",
    ]);
  }
  // The picture's bound: the account's connection pool (from DIR's limits when given).
  const maxDevices = dir === undefined
    ? DEFAULT_FLEET_LIMITS.maxDevices
    : await readAuthState(dir).then((s) => s.limits.max_devices, () =>
      DEFAULT_FLEET_LIMITS.maxDevices);
  return { creds, account, limit, maxTracked: 2 * devicesAccountConnections(maxDevices) };
}
