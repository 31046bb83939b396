/**
 * The one place the domain's errors become the CLI's: the folders below `commands/` throw
 * errors that say what went wrong in their own terms (a manifest is invalid, a device did not
 * answer, the API would be exposed, NATS is unreachable); here each gets its exit code.
 *
 * @module
 */

import { CliError, EXIT, InvalidInputError, OperationError } from "./cli.ts";
import { ManifestError } from "../manifests/file.ts";
import { DeviceRequestError } from "../devices/requests.ts";
import { ApiExposureError } from "../api/http.ts";
import { NatsConnectionError } from "../nats/connection.ts";

/** `e` as a {@linkcode CliError} with its exit code, or undefined for an unexpected error. */
export function asCliError(e: unknown): CliError | undefined {
  if (e instanceof CliError) return e;
  if (e instanceof ManifestError) return new InvalidInputError(e.message, e.details, { cause: e });
  if (e instanceof ApiExposureError) {
    return new CliError(e.message, EXIT.usage, e.details, { cause: e });
  }
  if (e instanceof DeviceRequestError || e instanceof NatsConnectionError) {
    return new OperationError(e.message, [], { cause: e });
  }
  return undefined;
}
