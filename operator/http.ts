/**
 * The operator's HTTP API as a plain `Request → Response` function, so it is
 * tested without a socket. Read-only: the fleet view and a health check.
 *
 * @module
 */

import type { FleetView } from "./aggregate.ts";

/** What the API needs from the running service. */
export interface ApiSource {
  /** The fleet view now. */
  view(): FleetView;
  /** Null when healthy, otherwise why not. */
  unhealthy(): string | null;
}

/** Thrown by a handler to answer with an HTTP error. */
export class HttpError extends Error {
  override name = "HttpError";
  /** HTTP status code. */
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

type Handler = (params: Record<string, string>) => Response;

interface Route {
  pattern: URLPattern;
  handler: Handler;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/** Builds the API handler. */
export function createApi(source: ApiSource): (request: Request) => Response {
  const routes: Route[] = [];
  const get = (pathname: string, handler: Handler) =>
    routes.push({ pattern: new URLPattern({ pathname }), handler });

  get("/healthz", () => {
    const problem = source.unhealthy();
    return problem === null
      ? json({ status: "ok" })
      : json({ status: "unavailable", message: problem }, 503);
  });
  get("/api/devices", () => json(source.view().devices));
  get("/api/deployments", () => json(source.view().deployments));
  get("/api/deployments/:name", ({ name }) => {
    const found = source.view().deployments.find((d) => d.name === name);
    if (found === undefined) throw new HttpError(404, `deployment "${name}" not found`);
    return json(found);
  });

  return (request: Request): Response => {
    try {
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
      if (e instanceof HttpError) return json({ error: e.message }, e.status);
      return json({ error: `internal error: ${(e as Error).message}` }, 500);
    }
  };
}
