/**
 * The operator's HTTP API as a plain `Request → Promise<Response>` function,
 * so it is tested without a socket. Read-only: the fleet view, a health
 * check, and two routes that ask a device over NATS (its recent events and
 * one chunk of a container's log, through {@linkcode DeviceRequests}, the
 * same functions the CLI uses). A route may answer synchronously or with a
 * promise; errors of either kind become responses in one place
 * ({@linkcode errorResponse}).
 *
 * A device that does not answer within a few seconds is a **504 Gateway
 * Timeout** (the operator is the device's gateway and the device, upstream,
 * did not answer), with `device`, `online` and `last_seen` from its last
 * status in the JSON body; 503 stays "the operator itself is starting".
 *
 * With a token, every request but the liveness check `/healthz` must carry
 * `Authorization: Bearer TOKEN`; `serve` refuses to listen beyond loopback
 * without one ({@linkcode checkApiExposure}), because the fleet view names
 * every device and deployment. Without a token only requests naming a
 * loopback `Host` are answered ({@linkcode foreignHostRefusal}): a web page
 * whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its
 * own name and is refused.
 *
 * @module
 */

import {
  type CommandErrorCode,
  type EventsReply,
  type LogsReply,
  LogsRequest,
  MAX_LOG_WAIT_MS,
  nameProblem,
  parseDuration,
} from "@drover/contracts";
import type { FleetView } from "../fleet/aggregate.ts";
import {
  DeviceBusyError,
  DeviceRefusedError,
  DeviceReplyError,
  type DeviceRequests,
  DeviceUnreachableError,
} from "../devices/requests.ts";

/** What the API needs from the running service. */
export interface ApiSource {
  /** The fleet view now; `undefined` while the service is starting. */
  view(): FleetView | undefined;
  /** Null when healthy, otherwise why not. */
  unhealthy(): string | null;
  /**
   * The Prometheus exposition (operator/api/metrics.ts), served at `/metrics`;
   * absent: no such route. It takes the token like the API: its labels name
   * every deployment (Prometheus sends it with `authorization: credentials`).
   */
  metrics?: () => Promise<string>;
  /**
   * What `/api/deployments/NAME` adds to the deployment's view: its rollout
   * status and revision history (operator/rollout/view.ts); absent: nothing.
   */
  deploymentDetails?: (name: string) => object;
  /**
   * Asks devices over NATS for `/api/devices/ID/events` and `/api/devices/ID/logs`
   * (operator/devices/requests.ts); absent: those routes answer 404.
   */
  deviceRequests?: DeviceRequests;
}

/** Content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Options of {@linkcode createApi}. */
export interface ApiOptions {
  /** The bearer token every request but `/healthz` must carry; none: open API. */
  token?: string | undefined;
}

/** Environment variable holding the API token (`serve --api-token` wins over it). */
export const API_TOKEN_ENV = "DROVER_API_TOKEN";

/** Shortest accepted API token: 16 random characters resist online guessing. */
export const MIN_API_TOKEN_LENGTH = 16;

/** Paths answered without a token: liveness probes carry no credentials. */
const OPEN_PATHS: ReadonlySet<string> = new Set(["/healthz"]);

/** RFC 6750's b64token: what may follow `Bearer ` in a header without quoting. */
const TOKEN_CHARS = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Why `token` cannot be the API token, or null when it can. Pure. */
export function apiTokenProblem(token: string): string | null {
  if (token.length < MIN_API_TOKEN_LENGTH) {
    return `it has ${token.length} character(s), at least ${MIN_API_TOKEN_LENGTH} are needed`;
  }
  if (!TOKEN_CHARS.test(token)) {
    return "it may hold only letters, digits and - . _ ~ + / (then = padding)";
  }
  return null;
}

/**
 * True for addresses only this machine can reach: `localhost`, 127.0.0.0/8,
 * `::1` (also IPv4-mapped). Any other name may resolve to a public address. Pure.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost" || host === "::1" || /^(?:0{0,4}:){1,7}:?0{0,4}1$/.test(host)) {
    return true;
  }
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return v4 !== null && Number(v4[1]) === 127 && v4.slice(2).every((o) => Number(o) <= 255);
}

/** The API would be served with a weak token, or without one beyond loopback (a usage error). */
export class ApiExposureError extends Error {
  override name = "ApiExposureError";
  /** How to fix it, one line each. */
  readonly details: string[];
  constructor(message: string, details: string[]) {
    super(message);
    this.details = details;
  }
}

/**
 * Without a token, the refusal of a request whose `Host` is not a loopback
 * name (or is missing); undefined when it may proceed. With a token the
 * token decides. Pure.
 */
export function foreignHostRefusal(
  request: Request,
  token: string | undefined,
): Response | undefined {
  if (token !== undefined) return undefined;
  const host = request.headers.get("host");
  let hostname: string | undefined;
  try {
    hostname = host === null ? undefined : new URL(`http://${host}`).hostname;
  } catch {
    hostname = undefined;
  }
  if (hostname !== undefined && isLoopbackHost(hostname)) return undefined;
  return json({
    error: `Host ${JSON.stringify(host)} refused: without an API token only loopback names ` +
      "(localhost, 127.0.0.1, [::1]) are answered; set an API token to serve other names",
  }, 403);
}

/** `HOST:PORT` as `--listen` takes it, an IPv6 host in brackets. Pure. */
export function formatListen(listen: { hostname: string; port: number }): string {
  return listen.hostname.includes(":")
    ? `[${listen.hostname}]:${listen.port}`
    : `${listen.hostname}:${listen.port}`;
}

/**
 * The token `serve` uses: `--api-token` if given, else `DROVER_API_TOKEN`
 * (empty counts as unset). Refuses a weak token, and no token on an address
 * beyond loopback. Pure.
 *
 * @throws {ApiExposureError} saying why and how to fix it.
 */
export function checkApiExposure(
  listen: { hostname: string; port: number },
  flag: string | undefined,
  env: string | undefined,
): string | undefined {
  const token = flag !== undefined && flag !== "" ? flag : env !== "" ? env : undefined;
  const source = flag !== undefined && flag !== "" ? "--api-token" : API_TOKEN_ENV;
  if (token !== undefined) {
    const problem = apiTokenProblem(token);
    if (problem === null) return token;
    throw new ApiExposureError(`Invalid ${source}: ${problem}`, [
      "generate one with: openssl rand -hex 32",
    ]);
  }
  if (isLoopbackHost(listen.hostname)) return undefined;
  const address = formatListen(listen);
  throw new ApiExposureError(
    `Refusing to serve the HTTP API on ${address} without a token: anyone who can reach that ` +
      "address could read the whole fleet's state",
    [
      `set ${API_TOKEN_ENV} (or --api-token; visible in ps) to a secret, e.g. $(openssl rand -hex 32),`,
      "and send it as: Authorization: Bearer <token>",
      "or listen on loopback only: --listen 127.0.0.1:8080",
    ],
  );
}

const encoder = new TextEncoder();

/** Compares in time that depends only on the expected token's length, never on its content. */
export function sameToken(given: string, expected: Uint8Array): boolean {
  const bytes = encoder.encode(given);
  let diff = bytes.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= (bytes[i] ?? 0) ^ expected[i]!;
  return diff === 0;
}

/** Thrown by a handler to answer with an HTTP error. */
export class HttpError extends Error {
  override name = "HttpError";
  /** HTTP status code. */
  readonly status: number;
  /** Extra response headers (`WWW-Authenticate` of a 401). */
  readonly headers: Record<string, string>;
  /** Extra fields of the JSON body, next to `error`. */
  readonly fields: Record<string, unknown>;
  constructor(
    status: number,
    message: string,
    headers: Record<string, string> = {},
    fields: Record<string, unknown> = {},
  ) {
    super(message);
    this.status = status;
    this.headers = headers;
    this.fields = fields;
  }
}

/** The `:name` parameters of a route's pathname, e.g. `"id"` for `/api/devices/:id/logs`. */
type RouteParams<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | RouteParams<`/${Rest}`>
  : P extends `${string}:${infer Name}` ? Name
  : never;

/** A route: synchronous, or a promise when it waits on something (a device). */
type Handler<P extends string = string> = (
  params: Readonly<Record<RouteParams<P>, string>>,
  url: URL,
) => Response | Promise<Response>;

interface Route {
  pattern: URLPattern;
  handler: Handler;
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

const REALM = 'Bearer realm="drover-operator"';

/** HTTP status of a device's refusal, by the agent's reason code. */
const REFUSAL_STATUS: Record<CommandErrorCode, number> = {
  bad_request: 400,
  not_found: 404,
  forbidden: 403,
  unavailable: 503,
};

/** A path segment's `%`-escapes decoded; a malformed one is the client's mistake (400). */
function decodePathPart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new HttpError(400, `malformed %-escape in the path segment "${text}"`);
  }
}

/**
 * The one place errors become responses: an {@linkcode HttpError} as it
 * says, a device that did not answer 504 (with when it was last seen), a
 * device's refusal by its code, an invalid reply 502, anything else 500.
 */
export function errorResponse(e: unknown): Response {
  if (e instanceof HttpError) return json({ error: e.message, ...e.fields }, e.status, e.headers);
  if (e instanceof DeviceUnreachableError) {
    return json({
      error: e.message,
      device: e.device,
      online: e.lastSeen.online,
      last_seen: e.lastSeen.last_seen,
    }, 504);
  }
  if (e instanceof DeviceRefusedError) {
    return json({ error: e.message, code: e.code }, REFUSAL_STATUS[e.code] ?? 502);
  }
  if (e instanceof DeviceReplyError) return json({ error: e.message }, 502);
  if (e instanceof DeviceBusyError) return json({ error: e.message }, 429, { "retry-after": "1" });
  return json({ error: `internal error: ${(e as Error)?.message ?? String(e)}` }, 500);
}

/** A whole number from query parameter `name` within [min, max], or undefined when absent. */
function intParam(url: URL, name: string, min: number, max: number): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return undefined;
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) {
    throw new HttpError(400, `invalid ${name} "${text}": expected a whole number ${min} to ${max}`);
  }
  return n;
}

/**
 * The device's `logs` request from the query of `/api/devices/ID/logs`:
 * `deployment`, `service` (both required), `tail`, `since` (RFC 3339 or a
 * duration such as `10m`), `cursor` (the previous reply's `cursor`, as
 * JSON), `follow` (`true`/`false`) and `wait_ms` (how long the device may
 * wait for a new line when following). Pure.
 *
 * @throws {HttpError} 400 naming the parameter
 */
export function logsRequestFromQuery(url: URL, now: number = Date.now()): LogsRequest {
  const q = url.searchParams;
  const request: Record<string, unknown> = {};
  for (const name of ["deployment", "service"]) {
    const value = q.get(name);
    if (value === null || value === "") {
      throw new HttpError(400, `missing query parameter "${name}"`);
    }
    request[name] = value;
  }
  const tail = intParam(url, "tail", 0, Number.MAX_SAFE_INTEGER);
  if (tail !== undefined) request.tail = tail;
  const since = q.get("since");
  if (since !== null && since !== "") {
    const ms = /^[0-9]{4}-/.test(since)
      ? Date.parse(since)
      : now - (parseDuration(since, { days: true, bareSeconds: true }) ?? NaN);
    if (Number.isNaN(ms)) {
      throw new HttpError(400, `invalid since "${since}": expected e.g. "10m" or an RFC 3339 time`);
    }
    request.since = new Date(ms).toISOString();
  }
  const cursor = q.get("cursor");
  if (cursor !== null && cursor !== "") {
    try {
      request.cursor = JSON.parse(cursor);
    } catch {
      throw new HttpError(400, `invalid cursor: expected the previous reply's cursor as JSON`);
    }
  }
  const follow = q.get("follow");
  if (follow !== null && follow !== "") {
    if (follow !== "true" && follow !== "false") {
      throw new HttpError(400, `invalid follow "${follow}": expected true or false`);
    }
    request.follow = follow === "true";
  }
  const waitMs = intParam(url, "wait_ms", 0, MAX_LOG_WAIT_MS);
  if (waitMs !== undefined) request.wait_ms = waitMs;
  const parsed = LogsRequest.safeParse(request);
  if (!parsed.success) {
    const [issue] = parsed.error.issues;
    if (issue === undefined) throw new Error("zod reported a failed logs query without an issue");
    throw new HttpError(400, `invalid ${issue.path.join(".") || "query"}: ${issue.message}`);
  }
  return parsed.data;
}

/** Throws a 401 unless `request` carries the token. */
function authorize(request: Request, expected: Uint8Array): void {
  const header = request.headers.get("authorization");
  if (header === null) {
    throw new HttpError(401, "missing token: send Authorization: Bearer <token>", {
      "www-authenticate": REALM,
    });
  }
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (match?.[1] === undefined || !sameToken(match[1], expected)) {
    throw new HttpError(401, "wrong token", {
      "www-authenticate": `${REALM}, error="invalid_token"`,
    });
  }
}

/** Builds the API handler. */
export function createApi(
  source: ApiSource,
  options: ApiOptions = {},
): (request: Request) => Promise<Response> {
  const expected = options.token === undefined ? undefined : encoder.encode(options.token);
  const view = (): FleetView => {
    const v = source.view();
    if (v === undefined) throw new HttpError(503, "starting");
    return v;
  };
  const routes: Route[] = [];
  const get = <P extends string>(pathname: P, handler: Handler<P>) =>
    // The pattern is made from the same pathname, so a match has every parameter the type names.
    routes.push({ pattern: new URLPattern({ pathname }), handler: handler as Handler });

  get("/healthz", () => {
    const problem = source.unhealthy();
    return problem === null
      ? json({ status: "ok" })
      : json({ status: "unavailable", message: problem }, 503);
  });
  get("/metrics", async () => {
    const render = source.metrics;
    if (render === undefined) throw new HttpError(404, "no route for /metrics");
    return new Response(await render(), { headers: { "content-type": METRICS_CONTENT_TYPE } });
  });
  get("/api/devices", () => json(view().devices));
  get("/api/deployments", () => json(view().deployments));
  get("/api/deployments/:name", ({ name }) => {
    const found = view().deployments.find((d) => d.name === name);
    if (found === undefined) throw new HttpError(404, `deployment "${name}" not found`);
    return json({ ...found, ...source.deploymentDetails?.(name) });
  });
  /** The device's request functions, once the id is valid and the device known. */
  const askable = (id: string): DeviceRequests => {
    const requests = source.deviceRequests;
    if (requests === undefined) throw new HttpError(404, "no device requests on this operator");
    const problem = nameProblem(id);
    if (problem) throw new HttpError(400, `invalid device id "${id}": ${problem}`);
    // A typo answers at once instead of after the device timeout.
    if (!view().devices.some((d) => d.device_id === id)) {
      throw new HttpError(404, `device "${id}" is neither registered nor reporting`);
    }
    return requests;
  };
  // Fresh each time: a cache would show a device's events as they were.
  const uncached = { "cache-control": "no-store" };
  get("/api/devices/:id/events", async ({ id }, url) => {
    const requests = askable(id);
    const afterSeq = intParam(url, "after_seq", 0, Number.MAX_SAFE_INTEGER);
    const reply: EventsReply = await requests.events(
      id,
      afterSeq === undefined ? {} : { after_seq: afterSeq },
    );
    return json(reply, 200, uncached);
  });
  get("/api/devices/:id/logs", async ({ id }, url) => {
    const requests = askable(id);
    const reply: LogsReply = await requests.logs(id, logsRequestFromQuery(url));
    return json(reply, 200, uncached);
  });

  return async (request: Request): Promise<Response> => {
    try {
      // Before routing, so an unauthenticated client learns nothing, not even which paths exist.
      if (expected !== undefined && !OPEN_PATHS.has(new URL(request.url).pathname)) {
        authorize(request, expected);
      }
      for (const route of routes) {
        const match = route.pattern.exec(request.url);
        if (match === null) continue;
        if (request.method !== "GET" && request.method !== "HEAD") {
          throw new HttpError(405, `method ${request.method} not allowed`);
        }
        const params: Record<string, string> = {};
        for (const [k, v] of Object.entries(match.pathname.groups)) {
          if (v !== undefined) params[k] = decodePathPart(v);
        }
        // Awaited here, so a route's rejected promise meets the same mapping as a throw.
        return await route.handler(params, new URL(request.url));
      }
      throw new HttpError(404, `no route for ${new URL(request.url).pathname}`);
    } catch (e) {
      return errorResponse(e);
    }
  };
}
