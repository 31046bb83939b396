/**
 * Podman REST client for the Drover agent: libpod API v4 over a unix socket,
 * one method per endpoint, typed errors, no business logic.
 *
 * @module
 */

export {
  type CallOptions,
  type ContainerLogsOptions,
  DEFAULT_API_VERSION,
  encodeRegistryAuth,
  type EventsOptions,
  type ListContainersOptions,
  PodmanClient,
  type PodmanClientOptions,
  PodmanEventStream,
  type PullImageOptions,
  type RemoveContainerOptions,
} from "./client.ts";
export {
  ImageNotFoundError,
  isImageNotFoundError,
  isNameConflictError,
  isNotFoundError,
  isPodmanError,
  isPodmanUnavailableError,
  isPullError,
  NameConflictError,
  NotFoundError,
  PodmanError,
  type PodmanErrorOptions,
  type PodmanResourceKind,
  PodmanUnavailableError,
  PullError,
} from "./errors.ts";
export { decodeLogFrames, type LogFrame, LogFrameDecoder, type LogStream } from "./log_frames.ts";
export { LineSplitter, readJsonLines } from "./ndjson.ts";
export type * from "./types.ts";
