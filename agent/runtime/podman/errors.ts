/**
 * Typed errors of the podman REST client.
 *
 * One class per condition a caller handles differently: a missing container or
 * image, a name already taken, a failed pull, and podman not answering at all
 * (the agent keeps running and retries). Everything else is a plain
 * {@linkcode PodmanError} carrying podman's own message.
 *
 * @module
 */

/** Where a failed call went: enough to reproduce it by hand. */
export interface PodmanRequestInfo {
  /** HTTP method, e.g. `"POST"`. */
  method: string;
  /** Path below the API version prefix, e.g. `"/libpod/containers/web/start"`. */
  path: string;
}

/** Fields every podman error carries. */
export interface PodmanErrorOptions extends PodmanRequestInfo {
  /** HTTP status podman answered with; `undefined` when no answer arrived. */
  status?: number;
  /** Podman's `message` field (the full explanation), if it sent one. */
  podmanMessage?: string;
  /** Podman's `cause` field (the short root cause), if it sent one. */
  podmanCause?: string;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * Base class: a call to the podman service failed. Subclasses name the
 * conditions callers act on; `instanceof PodmanError` catches them all.
 */
export class PodmanError extends Error {
  /** HTTP status podman answered with; `undefined` when no answer arrived. */
  readonly status: number | undefined;
  /** HTTP method of the failed call. */
  readonly method: string;
  /** Path of the failed call below the API version prefix. */
  readonly path: string;
  /** Podman's `message` field, if it sent one. */
  readonly podmanMessage: string | undefined;
  /** Podman's `cause` field, if it sent one. */
  readonly podmanCause: string | undefined;

  constructor(message: string, options: PodmanErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PodmanError";
    this.status = options.status;
    this.method = options.method;
    this.path = options.path;
    this.podmanMessage = options.podmanMessage;
    this.podmanCause = options.podmanCause;
  }
}

/** What kind of object podman did not find. */
export type PodmanResourceKind = "container" | "image" | "network" | "volume";

/** Podman answered 404: the named container or image does not exist. */
export class NotFoundError extends PodmanError {
  /** Whether a container or an image was missing. */
  readonly resource: PodmanResourceKind;
  /** The name or id the caller asked for. */
  readonly ref: string;

  /** @param action what the caller tried, e.g. `start container "web"`. */
  constructor(
    resource: PodmanResourceKind,
    ref: string,
    action: string,
    options: PodmanErrorOptions,
  ) {
    super(
      `Cannot ${action}: ${resource} ${JSON.stringify(ref)} does not exist` + detail(options),
      options,
    );
    this.name = "NotFoundError";
    this.resource = resource;
    this.ref = ref;
  }
}

/**
 * The image is not in local storage. Raised by image look-ups (404) and by
 * container create, which never pulls (podman answers 500 "image not known").
 */
export class ImageNotFoundError extends NotFoundError {
  /** The image reference that is missing. */
  readonly image: string;

  constructor(image: string, action: string, options: PodmanErrorOptions) {
    super("image", image, action, options);
    this.name = "ImageNotFoundError";
    this.image = image;
  }
}

/** Container create failed because another container already has the name. */
export class NameConflictError extends PodmanError {
  /** The container name that is taken. */
  readonly containerName: string;

  constructor(containerName: string, options: PodmanErrorOptions) {
    super(
      `Cannot create container ${JSON.stringify(containerName)}: the name is already in use` +
        detail(options),
      options,
    );
    this.name = "NameConflictError";
    this.containerName = containerName;
  }
}

/**
 * An image pull failed. Podman reports most pull failures inside an HTTP 200
 * stream, so `status` is often 200; `registryMessage` is the text to show
 * people (it holds the registry's own words, e.g. "unauthorized").
 */
export class PullError extends PodmanError {
  /** The reference that was being pulled. */
  readonly image: string;
  /** Podman's/the registry's explanation of the failure. */
  readonly registryMessage: string;

  constructor(image: string, registryMessage: string, options: PodmanErrorOptions) {
    super(`Cannot pull image ${JSON.stringify(image)}: ${registryMessage}`, options);
    this.name = "PullError";
    this.image = image;
    this.registryMessage = registryMessage;
  }
}

/**
 * The podman service could not be reached or dropped the connection (socket
 * missing, connection refused, stream cut). Transient by nature: retry later.
 */
export class PodmanUnavailableError extends PodmanError {
  /** The unix socket the client talks to. */
  readonly socketPath: string;

  constructor(socketPath: string, what: string, options: PodmanErrorOptions) {
    const reason = options.cause instanceof Error ? `: ${rootMessage(options.cause)}` : "";
    super(
      `Cannot ${what} as the podman service at ${socketPath} is unavailable${reason}`,
      options,
    );
    this.name = "PodmanUnavailableError";
    this.socketPath = socketPath;
  }
}

/** True if `err` is any error raised by the podman client. */
export function isPodmanError(err: unknown): err is PodmanError {
  return err instanceof PodmanError;
}

/** True if podman did not find the container or image (includes {@linkcode ImageNotFoundError}). */
export function isNotFoundError(err: unknown): err is NotFoundError {
  return err instanceof NotFoundError;
}

/** True if the image is missing from local storage. */
export function isImageNotFoundError(err: unknown): err is ImageNotFoundError {
  return err instanceof ImageNotFoundError;
}

/** True if a container name was already taken. */
export function isNameConflictError(err: unknown): err is NameConflictError {
  return err instanceof NameConflictError;
}

/** True if an image pull failed. */
export function isPullError(err: unknown): err is PullError {
  return err instanceof PullError;
}

/** True if the podman service could not be reached. */
export function isPodmanUnavailableError(err: unknown): err is PodmanUnavailableError {
  return err instanceof PodmanUnavailableError;
}

/** Podman's JSON error body: `{"cause": …, "message": …, "response": 500}`. */
export interface PodmanErrorBody {
  message?: string;
  cause?: string;
}

/**
 * Reads podman's error body. Podman sends JSON; anything else (a proxy, a
 * truncated answer) is kept as the message so nothing is lost.
 */
export function parseErrorBody(text: string): PodmanErrorBody {
  const trimmed = text.trim();
  if (trimmed === "") return {};
  try {
    const parsed: unknown = JSON.parse(trimmed);
    if (parsed !== null && typeof parsed === "object") {
      const { message, cause } = parsed as Record<string, unknown>;
      return {
        ...(typeof message === "string" ? { message } : {}),
        ...(typeof cause === "string" ? { cause } : {}),
      };
    }
  } catch {
    // Not JSON: fall through and keep the raw text.
  }
  return { message: trimmed };
}

/** Podman's words about the failure, if any, plus where the call went. */
function detail(options: PodmanErrorOptions): string {
  const said = options.podmanMessage ?? options.podmanCause;
  const where = `${
    options.status !== undefined ? `HTTP ${options.status} from ` : ""
  }${options.method} ${options.path}`;
  return `${said ? `: podman says ${JSON.stringify(said)}` : ""} (${where})`;
}

/** Deno wraps connect failures ("No such file or directory") in a cause chain. */
function rootMessage(err: Error): string {
  let current: unknown = err;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

/** Message text used by the client for the generic case. */
export function describeFailure(action: string, options: PodmanErrorOptions): string {
  return `Cannot ${action}${detail(options)}`;
}
