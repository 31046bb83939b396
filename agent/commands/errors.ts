/**
 * The one error a command handler throws to refuse a request: it becomes the
 * `{ error, code }` reply (contracts' `CommandError`).
 *
 * @module
 */

import type { CommandErrorCode } from "@drover/contracts";

/** A command the agent refuses or cannot carry out; its message goes back to the operator. */
export class CommandFailure extends Error {
  override name = "CommandFailure";
  /** Why, in the wire's terms. */
  readonly code: CommandErrorCode;
  constructor(code: CommandErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
