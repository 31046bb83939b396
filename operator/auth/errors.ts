/**
 * Errors of the device-identity module. One class per condition a caller
 * (the CLI) handles differently; every message says what to do next.
 *
 * @module
 */

/** Base class: anything that went wrong while managing NATS identities. */
export class AuthError extends Error {
  override name = "AuthError";
}

/** `auth init` would overwrite keys that already exist. */
export class AuthAlreadyInitializedError extends AuthError {
  override name = "AuthAlreadyInitializedError";
  /** The directory that already holds keys. */
  readonly dir: string;
  constructor(dir: string) {
    super(
      `Cannot initialise NATS auth in ${dir}: it already holds keys (auth.json). ` +
        "Re-initialising invalidates every device's creds; pass --force if that is what you want",
    );
    this.dir = dir;
  }
}

/** A command needs keys but `auth init` has not run for that directory. */
export class AuthNotInitializedError extends AuthError {
  override name = "AuthNotInitializedError";
  /** The directory without keys. */
  readonly dir: string;
  constructor(dir: string, options?: ErrorOptions) {
    super(
      `Cannot use NATS auth directory ${dir}: no auth.json there. Run "operator auth init --dir ${dir}" first`,
      options,
    );
    this.dir = dir;
  }
}

/** A file in the auth directory exists but cannot be understood. */
export class AuthFileInvalidError extends AuthError {
  override name = "AuthFileInvalidError";
  /** The unreadable file. */
  readonly path: string;
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`Cannot read ${path}: ${problem}`, options);
    this.path = path;
  }
}

/** `device add` for an id that already has live creds. */
export class DeviceExistsError extends AuthError {
  override name = "DeviceExistsError";
  /** The device id. */
  readonly deviceId: string;
  constructor(deviceId: string) {
    super(
      `Cannot add device "${deviceId}": it already has creds. ` +
        `Revoke it first ("operator device revoke ${deviceId}") to issue new ones`,
    );
    this.deviceId = deviceId;
  }
}

/** `device revoke` for an id the registry does not know. */
export class DeviceUnknownError extends AuthError {
  override name = "DeviceUnknownError";
  /** The device id. */
  readonly deviceId: string;
  constructor(deviceId: string) {
    super(`Cannot revoke device "${deviceId}": no such device in devices.json`);
    this.deviceId = deviceId;
  }
}

/** Bad arguments (a device id, a label, a server URL). */
export class AuthInputError extends AuthError {
  override name = "AuthInputError";
}
