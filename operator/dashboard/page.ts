/**
 * The HTML around every dashboard page, and the login form. Pure.
 *
 * @module
 */

import { esc } from "./static/render.js";

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
