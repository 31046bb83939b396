/**
 * The HTML around every dashboard page, and the login form. Pure.
 *
 * @module
 */

import { esc } from "./static/render.js";

export { logTargets } from "./static/render.js";

/** What one page shows. */
export interface PageParts {
  /** Title, without the product name. */
  title: string;
  /** `fleet`, `deployment` or `device`: the browser script reads it from `<body data-page>`. */
  page: "fleet" | "deployment" | "device";
  /** The deployment name or device id the page is about ("" for the fleet). */
  subject: string;
  /** The filter form (kept by the browser across updates). */
  form: string;
  /** The part the browser re-renders as events arrive. */
  live: string;
  /**
   * Interactive parts after `#live` that its re-renders must not wipe (the
   * device page's events and logs panes, {@linkcode devicePanes}).
   */
  panes?: string;
}

/** A complete page: it works without JavaScript; with it, `/ui/app.js` keeps `#live` current. */
export function pageShell(parts: PageParts): string {
  const heading = parts.page === "fleet"
    ? "Fleet"
    : `${parts.page === "deployment" ? "Deployment" : "Device"} <span class="subject">${
      esc(parts.subject)
    }</span>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(parts.title)} · Drover</title>
<link rel="stylesheet" href="/ui/style.css">
<link rel="icon" href="/favicon.ico">
<script type="module" src="/ui/app.js"></script>
</head>
<body data-page="${parts.page}" data-subject="${esc(parts.subject)}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<nav aria-label="Main"><a href="/" class="brand">Drover</a> <a href="/">Fleet</a></nav>
<p id="conn" role="status" aria-live="polite" class="conn">Static view: reload for news.</p>
</header>
<main id="main" tabindex="-1">
<h1>${heading}</h1>
${parts.form}
<div id="live">${parts.live}</div>
${parts.panes ?? ""}
</main>
</body>
</html>
`;
}

/** The login form: the API token, once, in exchange for a session cookie. */
export function loginPage(next: string, error: string | null): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Drover</title>
<link rel="stylesheet" href="/ui/style.css">
</head>
<body>
<main id="main" class="login">
<h1>Drover fleet dashboard</h1>
<form method="post" action="/ui/login">
${error === null ? "" : `<p role="alert" class="error">${esc(error)}</p>`}
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="${esc(next)}">
<p class="muted">The operator's <code>DROVER_API_TOKEN</code>. The browser keeps a session cookie
(not the token) for 12 hours.</p>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
`;
}

/**
 * The device page's events and logs panes. `/ui/app.js` fills them from
 * `/ui/devices/ID/events` and `/ui/devices/ID/logs` (the API's device routes
 * behind the dashboard's session); without JavaScript they say what they are.
 */
export function devicePanes(id: string, targets: readonly string[]): string {
  const options = targets.map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join("");
  return `<section id="events" data-hook="device-events" aria-labelledby="events-h">
<h2 id="events-h">Recent events</h2>
<div class="pane-bar"><button type="button" id="events-refresh">Refresh events</button>
<a href="#logs" id="to-logs">Skip to logs</a>
<span id="events-status" role="status" aria-live="polite" class="muted">Events are asked from the
device by the page's script (also: <code>operator events ${esc(id)}</code>).</span></div>
<div class="scroll"><table id="device-events"><caption class="sr-only">Recent events of ${
    esc(id)
  }, like events grouped, newest first</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Deployment</th>
<th scope="col">Service</th><th scope="col">Revision</th><th scope="col">Message</th></tr></thead>
<tbody></tbody></table></div>
</section>
<section id="logs" data-hook="device-logs" aria-labelledby="logs-h">
<h2 id="logs-h">Logs</h2>
<form id="log-form" class="filters" action="#logs">
<div><label for="log-target">Deployment/service</label><select id="log-target" name="target">${
    options || `<option value="">(no services reported)</option>`
  }</select></div>
<div><label for="log-tail">Last lines</label><input id="log-tail" name="tail" type="number" min="1" max="5000" value="200"></div>
<button type="submit">Show logs</button>
<div class="check"><input id="log-follow" name="follow" type="checkbox"><label for="log-follow">Follow</label></div>
</form>
<p id="logs-status" role="status" aria-live="polite" class="muted">Logs are read from the device's
container on request (also: <code>operator logs ${esc(id)} DEPLOYMENT/SERVICE</code>).</p>
<div id="log-lines" class="log" role="log" aria-labelledby="logs-h" tabindex="0"></div>
</section>`;
}
