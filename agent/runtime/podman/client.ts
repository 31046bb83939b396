/**
 * Podman REST client over the service's unix socket: one method per libpod
 * endpoint, no business logic. 404 becomes a typed not-found error and 304
 * ("already started/stopped") counts as success.
 *
 * @example
 * ```ts
 * using podman = new PodmanClient({ socketPath: "/run/podman/podman.sock" });
 * if (!await podman.imageExists("localhost/web:1")) await podman.pullImage("localhost/web:1");
 * const { id } = await podman.createContainer({ name: "web", image: "localhost/web:1" });
 * await podman.startContainer(id);
 * ```
 *
 * @module
 */

import {
  describeFailure,
  ImageNotFoundError,
  NameConflictError,
  NotFoundError,
  parseErrorBody,
  PodmanError,
  type PodmanErrorOptions,
  type PodmanResourceKind,
  PodmanUnavailableError,
  PullError,
} from "./errors.ts";
import { decodeLogFrames, type LogFrame } from "./log_frames.ts";
import { readJsonLines } from "./ndjson.ts";
import type {
  ContainerInspect,
  ContainerSummary,
  CreateContainerResult,
  HealthCheckResults,
  LibpodCreateSpec,
  NetworkSummary,
  PodmanEvent,
  PullPolicy,
  PullResult,
  RegistryAuth,
  VolumeSummary,
} from "./types.ts";
import { labelPairs } from "@drover/contracts";

/** The libpod API version Drover speaks: podman 4.0 and later answer it. */
export const DEFAULT_API_VERSION = "v4.0.0";

/** Options of {@linkcode PodmanClient}. */
export interface PodmanClientOptions {
  /** Path of podman's API socket, e.g. `/run/podman/podman.sock`. */
  socketPath: string;
  /** Libpod API version prefix; defaults to {@linkcode DEFAULT_API_VERSION}. */
  apiVersion?: string;
}

/** Options shared by calls that only take a cancellation signal. */
export interface CallOptions {
  signal?: AbortSignal | undefined;
}

/** Options of {@linkcode PodmanClient.pullImage}. */
export interface PullImageOptions extends CallOptions {
  /** Podman's pull policy; podman's default is `"always"`. */
  policy?: PullPolicy;
  /** Registry credentials, sent as `X-Registry-Auth`. */
  auth?: RegistryAuth;
  /** `false` allows plain HTTP and unverified TLS (private test registries). */
  tlsVerify?: boolean;
  /** Called with each progress line podman streams ("Copying blob …"). */
  onProgress?: (line: string) => void;
}

/** Options of {@linkcode PodmanClient.removeContainer}. */
export interface RemoveContainerOptions extends CallOptions {
  /** Remove even if running (stops it first). */
  force?: boolean;
  /** Seconds to wait for a graceful stop when forcing. */
  timeoutSeconds?: number;
  /** Also remove anonymous volumes of the container. */
  volumes?: boolean;
}

/** Options of {@linkcode PodmanClient.listContainers}. */
export interface ListContainersOptions extends CallOptions {
  /** Include stopped containers (podman lists only running ones otherwise). */
  all?: boolean;
  /** Label filter, ANDed: `{ k: "v" }` or `["k=v", "k2"]`. */
  labels?: Record<string, string> | string[];
  /** Further raw podman filters, e.g. `{ name: ["web"] }`; merged with `labels`. */
  filters?: Record<string, string[]>;
}

/** Options of {@linkcode PodmanClient.events}. */
export interface EventsOptions extends CallOptions {
  /** Replay events from this time: unix seconds, a `Date`, or a podman time string. */
  since?: string | number | Date;
  /** Stop at this time (same forms as `since`). */
  until?: string | number | Date;
  /** Podman event filters, e.g. `{ type: ["container"], label: ["drover.managed=true"] }`. */
  filters?: Record<string, string[]>;
  /** `false` returns the recorded events and ends instead of following live ones. */
  stream?: boolean;
}

/** Options of {@linkcode PodmanClient.containerLogs}. */
export interface ContainerLogsOptions extends CallOptions {
  /** Last N lines only; all lines when omitted. */
  tail?: number;
  /** Include stdout (default true). */
  stdout?: boolean;
  /** Include stderr (default true). */
  stderr?: boolean;
  /** Lines written at or after this time only (RFC 3339 or unix seconds, as podman parses it). */
  since?: string;
  /** Prefix each line with its RFC 3339 time and a space (podman 4.3: second precision). */
  timestamps?: boolean;
}

type Query = Record<string, string | number | boolean | undefined>;

interface RequestOptions extends CallOptions {
  query?: Query;
  json?: unknown;
  /** A raw body (a secret's value): sent as is, never logged. */
  bytes?: Uint8Array;
  headers?: Record<string, string>;
}

/** A request that failed at the HTTP level, before a class is chosen for it. */
interface FailedCall {
  action: string;
  info: PodmanErrorOptions;
}

/**
 * Client of podman's libpod REST API over a unix socket.
 *
 * Every method throws {@linkcode PodmanUnavailableError} when the service
 * cannot be reached, a {@linkcode PodmanError} subclass when podman refuses,
 * and the signal's reason when aborted. Close it (or `using`) when done: it
 * owns a connection pool.
 */
export class PodmanClient implements Disposable {
  /** The socket this client talks to. */
  readonly socketPath: string;
  /** The libpod API version prefix in use, e.g. `"v4.0.0"`. */
  readonly apiVersion: string;
  readonly #http: Deno.HttpClient;
  readonly #base: string;

  /** @throws {TypeError} naming the option when `socketPath` or `apiVersion` is invalid. */
  constructor(options: PodmanClientOptions) {
    const { socketPath, apiVersion = DEFAULT_API_VERSION } = options;
    if (typeof socketPath !== "string" || socketPath.trim() === "") {
      throw new TypeError(
        `Cannot create a podman client as socketPath is empty: current value is ${
          JSON.stringify(socketPath)
        }`,
      );
    }
    if (!/^v\d+\.\d+\.\d+$/.test(apiVersion)) {
      throw new TypeError(
        `Cannot create a podman client as apiVersion must look like "v4.0.0": current value is ${
          JSON.stringify(apiVersion)
        }`,
      );
    }
    this.socketPath = socketPath;
    this.apiVersion = apiVersion;
    // The host must be "libpod": podman picks libpod vs Docker-compat
    // semantics from the request URL (docs/podman-api.md).
    this.#base = `http://libpod/${apiVersion}`;
    this.#http = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  }

  /** Closes the connection pool; open event streams end. */
  close(): void {
    this.#http.close();
  }

  /** Same as {@linkcode PodmanClient.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Whether `ref` is in local image storage. */
  async imageExists(ref: string, options: CallOptions = {}): Promise<boolean> {
    const path = `/libpod/images/${segment(ref, "image reference")}/exists`;
    const action = `check whether image ${JSON.stringify(ref)} exists`;
    const res = await this.#request("GET", path, action, options);
    if (res.status === 204) return true;
    if (res.status === 404) {
      await discard(res);
      return false;
    }
    throw this.#classify(await this.#failure(res, action, "GET", path));
  }

  /**
   * Pulls an image, reading podman's whole progress stream. Podman answers
   * 200 before it knows the outcome; a failure is an `{"error": …}` line.
   *
   * @throws {PullError} with the registry's message when the pull fails.
   */
  async pullImage(ref: string, options: PullImageOptions = {}): Promise<PullResult> {
    const path = "/libpod/images/pull";
    const action = `pull image ${JSON.stringify(ref)}`;
    if (ref.trim() === "") {
      throw new TypeError(`Cannot pull an image as the reference is empty`);
    }
    const headers: Record<string, string> = {};
    if (options.auth) headers["X-Registry-Auth"] = encodeRegistryAuth(options.auth);
    const res = await this.#request("POST", path, action, {
      signal: options.signal,
      headers,
      query: { reference: ref, policy: options.policy, tlsVerify: options.tlsVerify },
    });
    if (res.status !== 200) {
      const failed = await this.#failure(res, action, "POST", path);
      const said = failed.info.podmanMessage ?? failed.info.podmanCause ??
        `podman answered HTTP ${res.status}`;
      throw new PullError(ref, said, failed.info);
    }
    const info = { method: "POST", path, status: 200 };
    let error: string | undefined;
    let result: PullResult | undefined;
    // The caller's callback may throw: that error is theirs, not a broken stream.
    let callbackError: { thrown: unknown } | undefined;
    try {
      for await (const line of readJsonLines(requireBody(res))) {
        const report = line as {
          stream?: unknown;
          error?: unknown;
          id?: unknown;
          images?: unknown;
        };
        if (typeof report.error === "string") error = report.error;
        if (typeof report.stream === "string" && options.onProgress) {
          try {
            options.onProgress(report.stream.trimEnd());
          } catch (thrown) {
            callbackError = { thrown };
            break;
          }
        }
        if (typeof report.id === "string") {
          const images = Array.isArray(report.images)
            ? report.images.filter((i): i is string => typeof i === "string")
            : [report.id];
          result = { id: report.id, images };
        }
      }
    } catch (err) {
      throw this.#streamFailure(err, action, info, options.signal);
    }
    if (callbackError) throw callbackError.thrown;
    if (error !== undefined) throw new PullError(ref, error, { ...info, podmanMessage: error });
    if (result === undefined) {
      throw new PullError(ref, "podman ended the pull stream without an image id", info);
    }
    return result;
  }

  /**
   * Creates a container (does not start it, does not pull).
   *
   * @throws {NameConflictError} if the name is taken.
   * @throws {ImageNotFoundError} if the image is not in local storage.
   */
  async createContainer(
    spec: LibpodCreateSpec,
    options: CallOptions = {},
  ): Promise<CreateContainerResult> {
    const path = "/libpod/containers/create";
    const action = `create container ${JSON.stringify(spec.name)}`;
    const res = await this.#request("POST", path, action, { signal: options.signal, json: spec });
    if (res.status !== 201) {
      const failed = await this.#failure(res, action, "POST", path);
      throw classifyCreateFailure(spec, failed.info);
    }
    const body = await res.json() as { Id: string; Warnings?: string[] | null };
    return { id: body.Id, warnings: body.Warnings ?? [] };
  }

  /**
   * Creates podman secret `name` holding `data` (file driver). Resolves
   * `"exists"` when the name is taken: podman 4.3 and 5.4 answer 500 "secret
   * name in use" then, not 409 (docs/podman-api.md).
   */
  async createSecret(
    name: string,
    data: Uint8Array,
    options: CallOptions = {},
  ): Promise<"created" | "exists"> {
    const path = "/libpod/secrets/create";
    const action = `create secret ${JSON.stringify(name)}`;
    const res = await this.#request("POST", path, action, {
      signal: options.signal,
      query: { name, driver: "file" },
      bytes: data,
    });
    if (res.status === 200 || res.status === 201) {
      await discard(res);
      return "created";
    }
    const failed = await this.#failure(res, action, "POST", path);
    if (/secret name in use/i.test(failed.info.podmanMessage ?? "")) return "exists";
    throw this.#classify(failed);
  }

  /** Names of every podman secret (values are never read back). */
  async listSecrets(options: CallOptions = {}): Promise<string[]> {
    const list = await this.#getJson<Array<{ Spec?: { Name?: string } }> | null>(
      "/libpod/secrets/json",
      "list secrets",
      options,
    );
    return (list ?? []).flatMap((s) => (s.Spec?.Name ? [s.Spec.Name] : []));
  }

  /** Removes podman secret `name`; already gone is success. */
  async removeSecret(name: string, options: CallOptions = {}): Promise<void> {
    const path = `/libpod/secrets/${segment(name, "secret name")}`;
    const action = `remove secret ${JSON.stringify(name)}`;
    const res = await this.#request("DELETE", path, action, { signal: options.signal });
    if (res.status === 404) return await discard(res);
    await this.#expectOk(res, [200, 204], action, "DELETE", path);
  }

  /** Starts a container; already running counts as success. */
  async startContainer(nameOrId: string, options: CallOptions = {}): Promise<void> {
    await this.#containerAction("POST", nameOrId, "start", "start", {}, options);
  }

  /** Removes a container. @throws {NotFoundError} if it does not exist. */
  async removeContainer(nameOrId: string, options: RemoveContainerOptions = {}): Promise<void> {
    const path = `/libpod/containers/${segment(nameOrId, "container name or id")}`;
    const action = `remove container ${JSON.stringify(nameOrId)}`;
    const res = await this.#request("DELETE", path, action, {
      signal: options.signal,
      query: { force: options.force, timeout: options.timeoutSeconds, v: options.volumes },
    });
    if (res.status === 204) return await discard(res);
    if (res.status !== 200) {
      throw this.#classify(await this.#failure(res, action, "DELETE", path), "container", nameOrId);
    }
    // Libpod answers 200 with one report per container; a report may carry an error.
    const reports = await res.json() as Array<{ Id?: string; Err?: unknown }> | null;
    const failedReport = reports?.find((r) => r.Err !== undefined && r.Err !== null);
    if (failedReport) {
      const said = typeof failedReport.Err === "string"
        ? failedReport.Err
        : JSON.stringify(failedReport.Err);
      throw new PodmanError(
        describeFailure(action, { method: "DELETE", path, status: 200, podmanMessage: said }),
        { method: "DELETE", path, status: 200, podmanMessage: said },
      );
    }
  }

  /** Lists containers, optionally filtered by labels (ANDed). */
  async listContainers(options: ListContainersOptions = {}): Promise<ContainerSummary[]> {
    const filters = { ...options.filters };
    if (options.labels !== undefined) {
      const labels = Array.isArray(options.labels) ? options.labels : labelPairs(options.labels);
      filters.label = [...(filters.label ?? []), ...labels];
    }
    const query: Query = { all: options.all };
    if (Object.keys(filters).length > 0) query.filters = JSON.stringify(filters);
    const list = await this.#getJson<ContainerSummary[] | null>(
      "/libpod/containers/json",
      "list containers",
      { signal: options.signal, query },
    );
    return (list ?? []).map((c) => ({ ...c, Labels: c.Labels ?? {}, Names: c.Names ?? [] }));
  }

  /** Inspects a container. @throws {NotFoundError} if it does not exist. */
  async inspectContainer(nameOrId: string, options: CallOptions = {}): Promise<ContainerInspect> {
    const path = `/libpod/containers/${segment(nameOrId, "container name or id")}/json`;
    const inspect = await this.#getJson<ContainerInspect>(
      path,
      `inspect container ${JSON.stringify(nameOrId)}`,
      options,
      { kind: "container", ref: nameOrId },
    );
    return { ...inspect, Config: { ...inspect.Config, Labels: inspect.Config?.Labels ?? {} } };
  }

  /**
   * Runs a container's health check once, now (podman 4.3 without systemd
   * never runs it on its own), and returns the resulting health state.
   * Not called yet: kept for the coming health-check work, which runs it.
   */
  async runHealthcheck(nameOrId: string, options: CallOptions = {}): Promise<HealthCheckResults> {
    const path = `/libpod/containers/${segment(nameOrId, "container name or id")}/healthcheck`;
    return await this.#getJson<HealthCheckResults>(
      path,
      `run the health check of container ${JSON.stringify(nameOrId)}`,
      options,
      { kind: "container", ref: nameOrId },
    );
  }

  /**
   * Reads a container's recorded output (not following), decoded into frames.
   * Not called yet: kept for the coming device-logs work, which serves it.
   */
  async containerLogs(nameOrId: string, options: ContainerLogsOptions = {}): Promise<LogFrame[]> {
    const path = `/libpod/containers/${segment(nameOrId, "container name or id")}/logs`;
    const action = `read the logs of container ${JSON.stringify(nameOrId)}`;
    const res = await this.#request("GET", path, action, {
      signal: options.signal,
      query: {
        stdout: options.stdout ?? true,
        stderr: options.stderr ?? true,
        tail: options.tail,
        since: options.since,
        timestamps: options.timestamps,
      },
    });
    if (res.status !== 200) {
      throw this.#classify(await this.#failure(res, action, "GET", path), "container", nameOrId);
    }
    const info = { method: "GET", path, status: 200 };
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      throw this.#streamFailure(err, action, info, options.signal);
    }
    try {
      return decodeLogFrames(bytes);
    } catch (err) {
      throw new PodmanError(describeFailure(action, info) + `: ${(err as Error).message}`, {
        ...info,
        cause: err,
      });
    }
  }

  /**
   * Creates a bridge network with DNS (aardvark-dns) and `labels`.
   *
   * @returns false when a network of that name exists already (409), which is left as is.
   */
  async createNetwork(
    name: string,
    labels: Record<string, string>,
    options: CallOptions = {},
  ): Promise<boolean> {
    const path = "/libpod/networks/create";
    const action = `create network ${JSON.stringify(name)}`;
    const res = await this.#request("POST", path, action, {
      signal: options.signal,
      json: { name, driver: "bridge", dns_enabled: true, labels },
    });
    if (res.status === 200 || res.status === 201) return (await discard(res), true);
    if (res.status === 409) return (await discard(res), false);
    throw this.#classify(await this.#failure(res, action, "POST", path));
  }

  /** Removes a network. @throws {NotFoundError} if it does not exist. */
  async removeNetwork(name: string, options: CallOptions = {}): Promise<void> {
    const path = `/libpod/networks/${segment(name, "network name")}`;
    const action = `remove network ${JSON.stringify(name)}`;
    const res = await this.#request("DELETE", path, action, { signal: options.signal });
    if (res.status === 200 || res.status === 204) return await discard(res);
    throw this.#classify(await this.#failure(res, action, "DELETE", path), "network", name);
  }

  /** Lists networks whose labels include every `key=value` of `labels`. */
  async listNetworks(
    labels: Record<string, string>,
    options: CallOptions = {},
  ): Promise<NetworkSummary[]> {
    const list = await this.#listByLabels<NetworkSummary>("networks", labels, options);
    return list.map((n) => ({ ...n, labels: n.labels ?? {} }));
  }

  /** Whether a named volume exists. */
  async volumeExists(name: string, options: CallOptions = {}): Promise<boolean> {
    const path = `/libpod/volumes/${segment(name, "volume name")}/exists`;
    const action = `check whether volume ${JSON.stringify(name)} exists`;
    const res = await this.#request("GET", path, action, options);
    if (res.status === 204) return true;
    if (res.status === 404) return (await discard(res), false);
    throw this.#classify(await this.#failure(res, action, "GET", path));
  }

  /**
   * Creates a named volume with `labels`.
   *
   * @returns false when one of that name exists already (podman 4.3 answers 500 "volume
   * already exists"), which is left as is.
   */
  async createVolume(
    name: string,
    labels: Record<string, string>,
    options: CallOptions = {},
  ): Promise<boolean> {
    const path = "/libpod/volumes/create";
    const action = `create volume ${JSON.stringify(name)}`;
    const res = await this.#request("POST", path, action, {
      signal: options.signal,
      json: { Name: name, Label: labels },
    });
    if (res.status === 201 || res.status === 200) return (await discard(res), true);
    const failed = await this.#failure(res, action, "POST", path);
    if (res.status === 409 || /already exists/.test(failed.info.podmanCause ?? "")) return false;
    throw this.#classify(failed);
  }

  /** Lists named volumes whose labels include every `key=value` of `labels`. */
  async listVolumes(
    labels: Record<string, string>,
    options: CallOptions = {},
  ): Promise<VolumeSummary[]> {
    const list = await this.#listByLabels<VolumeSummary>("volumes", labels, options);
    return list.map((v) => ({ ...v, Labels: v.Labels ?? {} }));
  }

  /**
   * Removes a named volume (never one in use: podman answers 409, a {@linkcode PodmanError}).
   *
   * @throws {NotFoundError} if it does not exist.
   */
  async removeVolume(name: string, options: CallOptions = {}): Promise<void> {
    const path = `/libpod/volumes/${segment(name, "volume name")}`;
    const action = `remove volume ${JSON.stringify(name)}`;
    const res = await this.#request("DELETE", path, action, { signal: options.signal });
    if (res.status === 204 || res.status === 200) return await discard(res);
    throw this.#classify(await this.#failure(res, action, "DELETE", path), "volume", name);
  }

  /**
   * Follows podman's event stream. The request starts at once; `opened`
   * settles when podman has answered. Iterate it once. Aborting `signal` or
   * calling `close()` ends the iteration quietly; losing the service throws
   * {@linkcode PodmanUnavailableError} — reconnect and replay with `since`.
   */
  events(options: EventsOptions = {}): PodmanEventStream {
    const path = "/libpod/events";
    const action = "read podman events";
    const query: Query = {
      stream: options.stream ?? true,
      since: formatTime(options.since),
      until: formatTime(options.until),
    };
    if (options.filters && Object.keys(options.filters).length > 0) {
      query.filters = JSON.stringify(options.filters);
    }
    return new PodmanEventStream(
      async (signal) => {
        const res = await this.#request("GET", path, action, { signal, query });
        if (res.status !== 200) throw this.#classify(await this.#failure(res, action, "GET", path));
        return res;
      },
      (err, signal) =>
        this.#streamFailure(err, action, { method: "GET", path, status: 200 }, signal),
      options.signal,
    );
  }

  // ---------------------------------------------------------------- helpers

  /** `GET /libpod/<kind>/json` filtered by labels (every `key=value`, ANDed); null is []. */
  async #listByLabels<T>(
    kind: "networks" | "volumes",
    labels: Record<string, string>,
    options: CallOptions,
  ): Promise<T[]> {
    const label = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
    const list = await this.#getJson<T[] | null>(`/libpod/${kind}/json`, `list ${kind}`, {
      signal: options.signal,
      query: { filters: JSON.stringify({ label }) },
    });
    return list ?? [];
  }

  async #containerAction(
    method: string,
    nameOrId: string,
    verb: string,
    endpoint: string,
    query: Query,
    options: CallOptions,
  ): Promise<void> {
    const path = `/libpod/containers/${segment(nameOrId, "container name or id")}/${endpoint}`;
    const action = `${verb} container ${JSON.stringify(nameOrId)}`;
    const res = await this.#request(method, path, action, { signal: options.signal, query });
    // 304: already in the requested state, which is what the caller wants.
    if (res.status === 204 || res.status === 304 || res.status === 200) return await discard(res);
    throw this.#classify(await this.#failure(res, action, method, path), "container", nameOrId);
  }

  async #getJson<T>(
    path: string,
    action: string,
    options: RequestOptions,
    notFound?: { kind: PodmanResourceKind; ref: string },
  ): Promise<T> {
    const res = await this.#request("GET", path, action, options);
    if (res.status !== 200) {
      throw this.#classify(
        await this.#failure(res, action, "GET", path),
        notFound?.kind,
        notFound?.ref,
      );
    }
    try {
      return await res.json() as T;
    } catch (err) {
      throw this.#streamFailure(err, action, { method: "GET", path, status: 200 }, options.signal);
    }
  }

  /** Sends one request; connection failures become PodmanUnavailableError. */
  async #request(
    method: string,
    path: string,
    action: string,
    options: RequestOptions,
  ): Promise<Response> {
    // A string: fetch parses it once (a URL object was parsed, re-serialised and parsed again).
    const search = toSearchParams(options.query ?? {}).toString();
    const url = search === "" ? this.#base + path : `${this.#base}${path}?${search}`;
    const headers = new Headers(options.headers);
    let body: string | Uint8Array<ArrayBuffer> | undefined;
    if (options.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(options.json);
    } else if (options.bytes !== undefined) {
      headers.set("Content-Type", "application/octet-stream");
      body = new Uint8Array(options.bytes);
    }
    try {
      return await fetch(url, {
        method,
        headers,
        body: body ?? null,
        signal: options.signal ?? null,
        client: this.#http,
      });
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw new PodmanUnavailableError(this.socketPath, action, { method, path, cause: err });
    }
  }

  /** Reads podman's error body (consuming the response). */
  async #failure(res: Response, action: string, method: string, path: string): Promise<FailedCall> {
    let text = "";
    try {
      text = await res.text();
    } catch {
      // The answer was cut short; the status alone still tells what failed.
    }
    const body = parseErrorBody(text);
    return {
      action,
      info: {
        method,
        path,
        status: res.status,
        ...(body.message !== undefined ? { podmanMessage: body.message } : {}),
        ...(body.cause !== undefined ? { podmanCause: body.cause } : {}),
      },
    };
  }

  async #expectOk(
    res: Response,
    ok: number[],
    action: string,
    method: string,
    path: string,
  ): Promise<void> {
    if (!ok.includes(res.status)) {
      throw this.#classify(await this.#failure(res, action, method, path));
    }
    await discard(res);
  }

  #classify(failed: FailedCall, kind?: PodmanResourceKind, ref?: string): PodmanError {
    if (failed.info.status === 404 && kind !== undefined && ref !== undefined) {
      return kind === "image"
        ? new ImageNotFoundError(ref, failed.action, failed.info)
        : new NotFoundError(kind, ref, failed.action, failed.info);
    }
    return new PodmanError(describeFailure(failed.action, failed.info), failed.info);
  }

  /** An error while reading an answer's body: abort, broken stream, or bad JSON. */
  #streamFailure(
    err: unknown,
    action: string,
    info: PodmanErrorOptions,
    signal: AbortSignal | undefined,
  ): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof PodmanError) return err;
    if (err instanceof SyntaxError || err instanceof RangeError) {
      return new PodmanError(`${describeFailure(action, info)}: ${err.message}`, {
        ...info,
        cause: err,
      });
    }
    return new PodmanUnavailableError(this.socketPath, action, { ...info, cause: err });
  }
}

/**
 * A live podman event stream: an `AsyncIterable` of {@linkcode PodmanEvent}
 * that can be iterated once, closed, and disposed with `await using`.
 */
export class PodmanEventStream implements AsyncIterable<PodmanEvent>, AsyncDisposable {
  /** Resolves once podman accepted the request (HTTP 200); rejects like the iteration would. */
  readonly opened: Promise<void>;
  readonly #controller = new AbortController();
  readonly #response: Promise<Response>;
  readonly #mapError: (err: unknown, signal: AbortSignal) => unknown;
  readonly #callerSignal: AbortSignal | undefined;
  readonly #onCallerAbort = () => this.close();
  #iterated = false;

  /** @internal Built by {@linkcode PodmanClient.events}. */
  constructor(
    open: (signal: AbortSignal) => Promise<Response>,
    mapError: (err: unknown, signal: AbortSignal) => unknown,
    callerSignal?: AbortSignal,
  ) {
    this.#mapError = mapError;
    this.#callerSignal = callerSignal;
    if (callerSignal?.aborted) this.#controller.abort(callerSignal.reason);
    // Removed again in close(): a long-lived agent signal must not collect
    // one listener per reconnect.
    callerSignal?.addEventListener("abort", this.#onCallerAbort, { once: true });
    this.#response = open(this.#controller.signal);
    this.opened = this.#response.then(() => {});
    // Nobody may ever await these; a failure is reported through iteration.
    this.opened.catch(() => {});
  }

  /** Whether the stream is closed (by the caller, or because it ended). */
  get closed(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Ends the stream and frees the connection. Safe to call more than once. */
  close(): void {
    this.#callerSignal?.removeEventListener("abort", this.#onCallerAbort);
    if (!this.#controller.signal.aborted) this.#controller.abort();
    this.#response.then((res) => res.body?.cancel()).catch(() => {});
  }

  /** Same as {@linkcode PodmanEventStream.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PodmanEvent> {
    if (this.#iterated) throw new TypeError("Cannot iterate a podman event stream twice");
    this.#iterated = true;
    const signal = this.#controller.signal;
    let res: Response;
    try {
      res = await this.#response;
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
    try {
      for await (const event of readJsonLines(requireBody(res))) yield event as PodmanEvent;
    } catch (err) {
      if (signal.aborted) return;
      throw this.#mapError(err, signal);
    } finally {
      this.close();
    }
  }
}

/**
 * Builds podman's `X-Registry-Auth` header value: URL-safe base64 (with
 * padding, as Go's `base64.URLEncoding` expects) of the credentials JSON.
 */
export function encodeRegistryAuth(auth: RegistryAuth): string {
  const bytes = new TextEncoder().encode(JSON.stringify({
    username: auth.username,
    password: auth.password,
    serveraddress: auth.serveraddress,
  }));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}

/**
 * Encodes a name or id as one URL path segment. `.` and `..` are refused:
 * URL parsing would resolve them and send the request to another endpoint.
 */
export function segment(value: string, what: string): string {
  if (typeof value !== "string" || value === "" || value === "." || value === "..") {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(value)
      } as ${what}: it must be a non-empty name other than "." or ".."`,
    );
  }
  return encodeURIComponent(value);
}

/**
 * Chooses the error class for a failed create from podman's message: podman
 * 4.3 answers 500 for both a taken name and a missing image.
 */
export function classifyCreateFailure(
  spec: Pick<LibpodCreateSpec, "name" | "image">,
  info: PodmanErrorOptions,
): PodmanError {
  const action = `create container ${JSON.stringify(spec.name)}`;
  const said = `${info.podmanMessage ?? ""} ${info.podmanCause ?? ""}`;
  if (/already in use/i.test(said)) return new NameConflictError(spec.name, info);
  if (/image not known|no such image/i.test(said)) {
    return new ImageNotFoundError(spec.image, action, info);
  }
  return new PodmanError(describeFailure(action, info), info);
}

function toSearchParams(query: Query): URLSearchParams {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  return params;
}

function formatTime(value: string | number | Date | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

function requireBody(res: Response): ReadableStream<Uint8Array> {
  if (res.body === null) throw new SyntaxError("podman sent an empty body where a stream was due");
  return res.body;
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}
