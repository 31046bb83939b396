/**
 * Whose NATS credentials a creds file holds, from the user JWT in it (its
 * `name` claim): `operator device add` names a device's user
 * `device-<id>`, `auth init` names the operator's `drover-operator`. Only
 * read to explain a mistake (an agent started with another device's creds,
 * an operator command run with a device's); the server decides access.
 * Pure.
 *
 * @module
 */

/** Prefix of a device user's name in its JWT: `device-<device id>`. */
export const DEVICE_USER_PREFIX = "device-";
/** Name of the operator service's user in its JWT. */
export const OPERATOR_USER_NAME = "drover-operator";

/** Whose credentials a creds file holds. */
export type CredsIdentity =
  | { kind: "device"; device: string }
  | { kind: "operator" }
  | { kind: "other"; name: string };

const JWT_BLOCK = /-----BEGIN NATS USER JWT-----\s*([A-Za-z0-9_\-.]+)\s*-+END NATS USER JWT-+/;

/** The claims of the user JWT in `text` (a creds file), or undefined when unreadable. */
function userClaims(text: string): Record<string, unknown> | undefined {
  const jwt = JWT_BLOCK.exec(text)?.[1];
  const payload = jwt?.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims: unknown = JSON.parse(new TextDecoder().decode(
      Uint8Array.from(
        atob(base64 + "=".repeat((4 - base64.length % 4) % 4)),
        (c) => c.charCodeAt(0),
      ),
    ));
    return typeof claims === "object" && claims !== null
      ? claims as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

/** The identity named by the user JWT in `text` (a creds file), or undefined when unreadable. */
export function credsIdentity(text: string): CredsIdentity | undefined {
  const name = userClaims(text)?.name;
  if (typeof name !== "string") return undefined;
  if (name === OPERATOR_USER_NAME) return { kind: "operator" };
  if (name.startsWith(DEVICE_USER_PREFIX)) {
    return { kind: "device", device: name.slice(DEVICE_USER_PREFIX.length) };
  }
  return { kind: "other", name };
}

/**
 * The account whose connect events the user JWT in `text` may subscribe to
 * (`$SYS.ACCOUNT.<account>.CONNECT`): for the connection guard's creds, the
 * devices' account it watches. Undefined when the JWT allows no such subject.
 */
export function connectEventsAccount(text: string): string | undefined {
  const nats = userClaims(text)?.nats as { sub?: { allow?: unknown } } | undefined;
  const allow = nats?.sub?.allow;
  if (!Array.isArray(allow)) return undefined;
  for (const subject of allow) {
    const m = typeof subject === "string"
      ? /^\$SYS\.ACCOUNT\.(A[A-Z2-7]{55})\.CONNECT$/.exec(subject)
      : null;
    if (m?.[1] !== undefined) return m[1];
  }
  return undefined;
}
