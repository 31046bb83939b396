/**
 * The fleet dashboard `operator serve` shows at `/`: pages rendered whole
 * on the server (they work without JavaScript), kept live in the browser by
 * server-sent events from {@linkcode LiveFeed}. Every asset is compiled into
 * the operator (text imports, so `deno bundle` inlines them): nothing is
 * fetched from anywhere else, at build or run time.
 *
 * Paths: `/` (fleet), `/deployments/NAME`, `/devices/ID`, `/ui/events`
 * (the event stream; `?device=ID` adds that device's detail),
 * `/ui/devices/ID/events` and `/ui/devices/ID/logs` (the device page's
 * panes), `/ui/login`, `/ui/logout`, `/ui/app.js`, `/ui/device.js`,
 * `/ui/render.js`, `/ui/style.css`, `/favicon.ico`. Read-only.
 *
 * With an API token, a page or the stream needs either the API's
 * `Authorization: Bearer TOKEN` or the session cookie that `/ui/login` sets
 * after the token is typed into its form: a browser cannot add a header to
 * a page load or an `EventSource`. The cookie holds a random session id
 * (never the token) that the operator holds with its issue time and expiry
 * ({@linkcode Sessions}): logout ends it. It is HttpOnly and SameSite=Strict. The static assets
 * are open: they are the same in every installation and name nothing.
 *
 * The device page's panes ask the device through the API's
 * `/api/devices/ID/events` and `/api/devices/ID/logs`, which want the
 * header. The page cannot send it (the token stays out of the browser's
 * script), so the dashboard answers exactly those two reads at
 * `/ui/devices/ID/events|logs` on its own session and passes them to the API
 * with the token: the rest of `/api/*` keeps taking the header only, and no
 * cookie opens anything but two GETs (SameSite=Strict keeps other sites'
 * pages from sending it at all).
 *
 * @module
 */

import { sameToken } from "../http.ts";
import { SESSION_MAX_AGE_SECONDS, Sessions } from "./sessions.ts";
import { entriesObject, flatten, LiveFeed, type LiveFeedOptions, type LiveSource } from "./live.ts";
import { deviceDetail } from "./live.ts";
import { APP_JS, DEVICE_JS, RENDER_JS, STYLE_CSS } from "./_assets.ts";
import { FAVICON_ICO } from "./favicon.ts";
import { devicePanes, loginPage, logTargets, pageShell } from "./page.ts";
import {
  buildModel,
  parseQuery,
  renderDeployment,
  renderDeploymentForm,
  renderDevice,
  renderFleet,
  renderFleetForm,
} from "./static/render.js";

export { LiveFeed, type LiveFeedOptions, type LiveSource } from "./live.ts";
export { SESSION_MAX_AGE_SECONDS, Sessions } from "./sessions.ts";

/** Name of the dashboard's session cookie. */
export const SESSION_COOKIE = "drover_ui";

/** Options of {@linkcode Dashboard}. */
export interface DashboardOptions {
  /** The API token; pages then need it (header or login cookie). */
  token?: string | undefined;
  /** Options of the live feed (tick and coalescing intervals). */
  feed?: LiveFeedOptions;
  /**
   * The HTTP API (operator/api/http.ts `createApi`), which answers the device
   * panes' reads; absent: `/ui/devices/ID/events|logs` answer 404.
   */
  api?: (request: Request) => Response | Promise<Response>;
  /** The session table (tests pass one with a controlled clock). */
  sessions?: Sessions;
}

/** The value of cookie `name` in a `Cookie` header, or null (pure). */
export function cookieValue(header: string | null, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** `next` if it is a path on this server, else `/`: a login never redirects elsewhere (pure). */
export function safeNext(next: string | null): string {
  return next !== null && /^\/(?![\/\\])/.test(next) ? next : "/";
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

function html(body: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      ...SECURITY_HEADERS,
      ...headers,
    },
  });
}

function asset(body: string | Uint8Array<ArrayBuffer>, type: string): Response {
  return new Response(body, {
    headers: {
      "content-type": type,
      // Revalidated on every load: an upgraded operator must not meet an old script.
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    },
  });
}

function redirect(location: string, headers: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: { location, ...headers } });
}

const ASSETS: Record<string, () => Response> = {
  "/ui/app.js": () => asset(APP_JS, "text/javascript; charset=utf-8"),
  "/ui/device.js": () => asset(DEVICE_JS, "text/javascript; charset=utf-8"),
  "/ui/render.js": () => asset(RENDER_JS, "text/javascript; charset=utf-8"),
  "/ui/style.css": () => asset(STYLE_CSS, "text/css; charset=utf-8"),
  // Browsers ask for it on their own, before any login: open, like the other assets.
  "/favicon.ico": () => asset(FAVICON_ICO, "image/x-icon"),
};

const DEPLOYMENT_PAGE = new URLPattern({ pathname: "/deployments/:name" });
const DEVICE_PAGE = new URLPattern({ pathname: "/devices/:id" });
/** The device panes' reads, answered by the API's routes of the same name under /api. */
const DEVICE_READ = new URLPattern({ pathname: "/ui/devices/:id/:what(events|logs)" });

/** Serves the dashboard's paths; {@linkcode handle} answers undefined for every other path. */
export class Dashboard {
  /** The live feed behind `/ui/events`; call its `notify` on fleet changes. */
  readonly feed: LiveFeed;
  readonly #source: LiveSource;
  readonly #token: Uint8Array | undefined;
  readonly #sessions: Sessions;
  readonly #api: DashboardOptions["api"];

  constructor(source: LiveSource, options: DashboardOptions = {}) {
    this.#source = source;
    this.feed = new LiveFeed(source, options.feed);
    this.#api = options.api;
    const encoder = new TextEncoder();
    this.#token = options.token === undefined ? undefined : encoder.encode(options.token);
    this.#sessions = options.sessions ?? new Sessions();
  }

  /** Ends every open event stream (at shutdown). */
  close(): void {
    this.feed.close();
  }

  /** True when no token is set, or the request carries it (header) or a live session's cookie. */
  authorized(request: Request): boolean {
    if (this.#token === undefined) return true;
    const bearer = /^Bearer +(\S+) *$/i.exec(request.headers.get("authorization") ?? "");
    if (bearer?.[1] !== undefined && sameToken(bearer[1], this.#token)) return true;
    const cookie = cookieValue(request.headers.get("cookie"), SESSION_COOKIE);
    return this.#sessions.check(cookie) !== undefined;
  }

  /** The response for a dashboard path, or undefined when the path is not the dashboard's. */
  handle(request: Request): Response | Promise<Response> | undefined {
    const url = new URL(request.url);
    const path = url.pathname;
    const read = request.method === "GET" || request.method === "HEAD";
    const asset = Object.hasOwn(ASSETS, path) ? ASSETS[path] : undefined;
    if (asset !== undefined) return read ? asset() : notAllowed();
    if (path === "/ui/login") {
      if (request.method === "POST") return this.#login(request, url);
      if (!read) return notAllowed();
      if (this.#token === undefined) return redirect(safeNext(url.searchParams.get("next")));
      return html(loginPage(safeNext(url.searchParams.get("next")), null));
    }
    if (path === "/ui/logout") {
      if (request.method !== "POST") return notAllowed();
      // The session ends here, not only in this browser: a copy of the cookie opens nothing.
      this.#sessions.end(cookieValue(request.headers.get("cookie"), SESSION_COOKIE));
      return redirect("/ui/login", { "set-cookie": this.#cookie(request, "", 0) });
    }
    const deployment = DEPLOYMENT_PAGE.exec(url)?.pathname.groups.name;
    const device = DEVICE_PAGE.exec(url)?.pathname.groups.id;
    const deviceRead = DEVICE_READ.exec(url)?.pathname.groups;
    const isPage = path === "/" || deployment !== undefined || device !== undefined;
    if (!isPage && path !== "/ui/events" && deviceRead === undefined) return undefined;
    if (!read) return notAllowed();
    if (!this.authorized(request)) {
      if (!isPage) {
        return new Response(JSON.stringify({ error: "log in at /ui/login" }) + "\n", {
          status: 401,
          headers: { "content-type": "application/json; charset=utf-8" },
        });
      }
      return redirect(`/ui/login?next=${encodeURIComponent(path + url.search)}`);
    }
    if (path === "/ui/events") {
      const focus = url.searchParams.get("device") ?? undefined;
      return new Response(this.feed.open(focus), {
        headers: {
          "content-type": "text/event-stream; charset=utf-8",
          // no-transform: a proxy (or the server's own compression) must not buffer the stream.
          "cache-control": "no-cache, no-transform",
          "x-accel-buffering": "no",
        },
      });
    }
    if (deviceRead !== undefined) return this.#deviceRead(request, url, deviceRead);
    return this.#page(url, deployment, device);
  }

  /** `/ui/devices/ID/events|logs` → the API's `/api/devices/ID/events|logs`, with the token. */
  #deviceRead(
    request: Request,
    url: URL,
    groups: Record<string, string | undefined>,
  ): Response | Promise<Response> {
    if (this.#api === undefined) {
      return new Response(JSON.stringify({ error: "no device reads on this operator" }) + "\n", {
        status: 404,
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    }
    const target = new URL(`/api/devices/${groups.id}/${groups.what}${url.search}`, url);
    const headers = new Headers();
    if (this.#token !== undefined) {
      headers.set("authorization", `Bearer ${new TextDecoder().decode(this.#token)}`);
    }
    return this.#api(
      new Request(target, { method: request.method, headers, signal: request.signal }),
    );
  }

  #page(url: URL, deployment: string | undefined, device: string | undefined): Response {
    const now = Date.now();
    const view = this.#source.view(now);
    const query = parseQuery(url.searchParams);
    const model = buildModel(view === undefined ? {} : entriesObject(flatten(view)));
    const starting = view === undefined
      ? `<p role="status">The operator is starting: it is still reading the buckets.</p>`
      : "";
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    };
    if (deployment !== undefined) {
      const name = decode(deployment);
      return html(pageShell({
        title: `Deployment ${name}`,
        page: "deployment",
        subject: name,
        form: renderDeploymentForm(name, query),
        live: starting + renderDeployment(model, name, query, now),
      }));
    }
    if (device !== undefined) {
      const id = decode(device);
      const detail = deviceDetail(this.#source.device(id));
      return html(pageShell({
        title: `Device ${id}`,
        page: "device",
        subject: id,
        form: "",
        live: starting + renderDevice(model, id, detail, now),
        panes: devicePanes(id, logTargets(detail)),
      }));
    }
    return html(pageShell({
      title: "Fleet",
      page: "fleet",
      subject: "",
      form: renderFleetForm(query),
      live: starting + renderFleet(model, query, now),
    }));
  }

  async #login(request: Request, url: URL): Promise<Response> {
    if (this.#token === undefined) return redirect("/");
    let form: FormData;
    try {
      form = await request.formData();
    } catch {
      return html(loginPage("/", "Send the form from the login page."), 400);
    }
    const next = safeNext(String(form.get("next") ?? url.searchParams.get("next") ?? "/"));
    const given = String(form.get("token") ?? "");
    if (!sameToken(given, this.#token)) {
      return html(loginPage(next, "Wrong token."), 401);
    }
    return redirect(next, {
      "set-cookie": this.#cookie(request, this.#sessions.issue(), 1),
    });
  }

  #cookie(request: Request, value: string, live: 0 | 1): string {
    // Secure only where the browser came over HTTPS (a TLS proxy says so): over plain HTTP
    // (an SSH tunnel to loopback) a Secure cookie would never be sent back.
    const https = new URL(request.url).protocol === "https:" ||
      request.headers.get("x-forwarded-proto") === "https";
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${
      live ? SESSION_MAX_AGE_SECONDS : 0
    }${https ? "; Secure" : ""}`;
  }
}

function notAllowed(): Response {
  return new Response(JSON.stringify({ error: "method not allowed: the dashboard is read-only" }), {
    status: 405,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}
