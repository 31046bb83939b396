/**
 * Debian's chromium for browser tests, driven by playwright-core (never a
 * downloaded browser): headless, kept off the network (it phones home
 * otherwise), with a fresh profile directory (playwright passes it as
 * --user-data-dir). As root it needs --no-sandbox.
 *
 * @module
 */

import { type BrowserContext, chromium } from "playwright-core";

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** Starts chromium with its profile in `profileDir`; close the context to stop it. */
export async function launchBrowser(profileDir: string): Promise<BrowserContext> {
  return await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
