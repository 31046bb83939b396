/**
 * NATS identities for Drover (decentralized auth: nkeys and JWTs): keys for
 * the operator and accounts, per-device creds with least-privilege subject
 * permissions, revocation, and the nats-server config fragment.
 *
 * @module
 */

export * from "./errors.ts";
export * from "./permissions.ts";
export * from "./claims.ts";
export * from "./device_config.ts";
export { AUTH_DIR_MODE, AUTH_FILES, SECRET_FILE_MODE } from "./store.ts";
export {
  authInit,
  type AuthInitOptions,
  type AuthInitResult,
  CONF_FILE_MODE,
  issueSystemCreds,
} from "./init.ts";
export * from "./devices.ts";
export * from "./release_key.ts";
