/**
 * The operator's HTTP API as a plain `Request → Response` function, so it is
 * tested without a socket. Read-only: the fleet view and a health check.
 *
 * With a token, every request but the liveness check `/healthz` must carry
 * `Authorization: Bearer TOKEN`; `serve` refuses to listen beyond loopback
 * without one ({@linkcode checkApiExposure}), because the fleet view names
 * every device and deployment.
 *
 * @module
 */

import type { FleetView } from "./aggregate.ts";
import { CliError, EXIT } from "./cli.ts";

/** What the API needs from the running service. */
export interface ApiSource {
  /** The fleet view now; `undefined` while the service is starting. */
  view(): FleetView | undefined;
  /** Null when healthy, otherwise why not. */
  unhealthy(): string | null;
  /**
   * The Prometheus exposition (operator/metrics.ts), served at `/metrics`;
   * absent: no such route. It takes the token like the API: its labels name
   * every deployment (Prometheus sends it with `authorization: credentials`).
   */
  metrics?: () => Promise<string>;
  /**
   * What `/api/deployments/NAME` adds to the deployment's view: its rollout
   * status and revision history (operator/rollout_view.ts); absent: nothing.
   */
  deploymentDetails?: (name: string) => object;
}

/** Content type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Options of {@linkcode createApi}. */
export interface ApiOptions {
  /** The bearer token every request but `/healthz` must carry; none: open API. */
  token?: string;
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

/**
 * The token `serve` uses: `--api-token` if given, else `DROVER_API_TOKEN`
 * (empty counts as unset). Refuses a weak token, and no token on an address
 * beyond loopback. Pure.
 *
 * @throws {CliError} exit code 2, saying why and how to fix it.
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
    throw new CliError(`Invalid ${source}: ${problem}`, EXIT.usage, [
      "generate one with: openssl rand -hex 32",
    ]);
  }
  if (isLoopbackHost(listen.hostname)) return undefined;
  const address = listen.hostname.includes(":")
    ? `[${listen.hostname}]:${listen.port}`
    : `${listen.hostname}:${listen.port}`;
  throw new CliError(
    `Refusing to serve the HTTP API on ${address} without a token: anyone who can reach that ` +
      "address could read the whole fleet's state",
    EXIT.usage,
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
  for (let i = 0; i < expected.length; i++) diff |= (bytes[i] ?? 0) ^ expected[i];
  return diff === 0;
}

/** Thrown by a handler to answer with an HTTP error. */
export class HttpError extends Error {
  override name = "HttpError";
  /** HTTP status code. */
  readonly status: number;
  /** Extra response headers (`WWW-Authenticate` of a 401). */
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

type Handler = (params: Record<string, string>) => Response;

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

/** Throws a 401 unless `request` carries the token. */
function authorize(request: Request, expected: Uint8Array): void {
  const header = request.headers.get("authorization");
  if (header === null) {
    throw new HttpError(401, "missing token: send Authorization: Bearer <token>", {
      "www-authenticate": REALM,
    });
  }
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (match === null || !sameToken(match[1], expected)) {
    throw new HttpError(401, "wrong token", {
      "www-authenticate": `${REALM}, error="invalid_token"`,
    });
  }
}

/** Builds the API handler. */
export function createApi(
  source: ApiSource,
  options: ApiOptions = {},
): (request: Request) => Response {
  const expected = options.token === undefined ? undefined : encoder.encode(options.token);
  const view = (): FleetView => {
    const v = source.view();
    if (v === undefined) throw new HttpError(503, "starting");
    return v;
  };
  const routes: Route[] = [];
  const get = (pathname: string, handler: Handler) =>
    routes.push({ pattern: new URLPattern({ pathname }), handler });

  get("/healthz", () => {
    const problem = source.unhealthy();
    return problem === null
      ? json({ status: "ok" })
      : json({ status: "unavailable", message: problem }, 503);
  });
  get("/metrics", () => {
    const render = source.metrics;
    if (render === undefined) throw new HttpError(404, "no route for /metrics");
    const text = render();
    // The handler stays synchronous: the body follows once the registry has collected.
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        try {
          controller.enqueue(encoder.encode(await text));
          controller.close();
        } catch (e) {
          controller.error(e);
        }
      },
    });
    return new Response(body, { headers: { "content-type": METRICS_CONTENT_TYPE } });
  });
  get("/api/devices", () => json(view().devices));
  get("/api/deployments", () => json(view().deployments));
  get("/api/deployments/:name", ({ name }) => {
    const found = view().deployments.find((d) => d.name === name);
    if (found === undefined) throw new HttpError(404, `deployment "${name}" not found`);
    return json({ ...found, ...source.deploymentDetails?.(name) });
  });

  return (request: Request): Response => {
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
          if (v !== undefined) params[k] = decodeURIComponent(v);
        }
        return route.handler(params);
      }
      throw new HttpError(404, `no route for ${new URL(request.url).pathname}`);
    } catch (e) {
      // The one place errors become responses.
      if (e instanceof HttpError) return json({ error: e.message }, e.status, e.headers);
      return json({ error: `internal error: ${(e as Error).message}` }, 500);
    }
  };
}
