/**
 * `deno run -A bench/dashboard.ts [--devices 5000] [--loads 3]`
 *
 * The fleet dashboard with N stand-in devices (registry entries and agent
 * statuses written straight into KV, as agents would) behind a real
 * `operator serve`, opened in Debian's chromium through playwright-core:
 * - time to first render: first contentful paint of the server's HTML, and
 *   the first live render from the event stream's snapshot (ms after
 *   navigation start), median of `--loads` fresh page loads;
 * - a filter typed into the page until the table shows it;
 * - bytes: the first page (HTML and its three assets) and the event stream's
 *   snapshot, as sent;
 * - the operator's cost of one live-feed recomputation (view, flatten, diff)
 *   for the same fleet, measured in this process.
 *
 * Writes `bench/results-dashboard.json` and the "Dashboard" section of
 * `bench/RESULTS.md` (between markers that `deno task bench` keeps). Reports
 * numbers; asserts nothing.
 *
 * @module
 */

import { launchBrowser } from "../tests/support/browser.ts";
import { BUCKET_AGENT_STATUS, BUCKET_DEVICES } from "@drover/contracts";
import { forEachBounded } from "../operator/nats/kv.ts";
import { FleetState } from "../operator/fleet/state.ts";
import { diffEntries, flatten } from "../operator/api/dashboard/live.ts";
import type { MirrorEntry } from "../operator/nats/kv.ts";
import { freePort, startNats, tempDir } from "../tests/support/mod.ts";
import { startOperatorService, testKv } from "../tests/support/operator_process.ts";
import { REPO_ROOT } from "./process.ts";
import {
  sectionMarkers,
  sectionOf as keptSection,
  withSection as replaceSection,
} from "./sections.ts";
import { round } from "./stats.ts";

/** Markers around the dashboard's section of RESULTS.md. */
/** The RESULTS.md section this benchmark writes (bench/sections.ts). */
const SECTION_NAME = "dashboard-bench";
export const SECTION_START = sectionMarkers(SECTION_NAME).start;
/** End marker of the section. */
export const SECTION_END = sectionMarkers(SECTION_NAME).end;

/** Everything this bench measures. */
export interface DashboardBench {
  date: string;
  devices: number;
  loads: number;
  firstPaintMs: number;
  firstLiveRenderMs: number;
  filterMs: number;
  pageBytes: Record<string, number>;
  pageBytesTotal: number;
  snapshotBytes: number;
  compressed: boolean;
  feedComputeMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function standIn(id: string, i: number): { registration: string; status: string } {
  const now = new Date().toISOString();
  return {
    registration: JSON.stringify({ labels: { site: `s${i % 10}` }, updated_at: now }),
    status: JSON.stringify({
      device_id: id,
      status: i % 50 === 0 ? "degraded" : "ready",
      timestamp: now,
      agent_version: "stand-in-1",
      labels: {},
      heartbeat_seconds: 3600,
      deployments: {},
    }),
  };
}

/** The live feed's work per recomputation for `n` devices, in this process (median of 5). */
function feedComputeMs(n: number): number {
  const state = new FleetState();
  const enc = new TextEncoder();
  const entry = (key: string, value: string): MirrorEntry =>
    ({
      key,
      value: enc.encode(value),
      operation: "PUT",
      revision: 1,
      created: new Date(),
    }) as MirrorEntry;
  for (let i = 0; i < n; i++) {
    const id = `stand-in-${String(i).padStart(5, "0")}`;
    const s = standIn(id, i);
    state.applyRegistration(entry(id, s.registration));
    state.applyStatus(entry(id, s.status));
  }
  let before = flatten(state.view(Date.now()));
  const times: number[] = [];
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    const after = flatten(state.view(Date.now()));
    diffEntries(before, after);
    before = after;
    times.push(performance.now() - t0);
  }
  return round(median(times));
}

async function streamSnapshotBytes(url: string): Promise<{ bytes: number; compressed: boolean }> {
  const res = await fetch(url, { headers: { "accept-encoding": "gzip, br" } });
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let bytes = 0;
  let text = "";
  while (!text.includes("event: snapshot") || !text.endsWith("\n\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    text += dec.decode(value, { stream: true });
  }
  await reader.cancel();
  return { bytes, compressed: res.headers.has("content-encoding") };
}

/** Runs the bench. */
export async function runDashboardBench(devices: number, loads: number): Promise<DashboardBench> {
  await using nats = await startNats();
  await using operator = await startOperatorService(nats.url, await freePort());
  await using kv = await testKv(nats.url);
  const statuses = await kv.open(BUCKET_AGENT_STATUS);
  const registry = await kv.open(BUCKET_DEVICES);
  const ids = Array.from({ length: devices }, (_, i) => `stand-in-${String(i).padStart(5, "0")}`);
  await forEachBounded(ids.entries(), 128, async ([i, id]) => {
    const s = standIn(id, i);
    await registry.put(id, s.registration);
    await statuses.put(id, s.status);
  });
  // Wait until the operator holds them all.
  for (;;) {
    const res = await fetch(`${operator.apiUrl}/api/devices`);
    if ((await res.json()).length === devices) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  const pageBytes: Record<string, number> = {};
  for (const path of ["/", "/ui/app.js", "/ui/render.js", "/ui/style.css"]) {
    const res = await fetch(`${operator.apiUrl}${path}`);
    pageBytes[path] = (await res.arrayBuffer()).byteLength;
  }
  const snapshot = await streamSnapshotBytes(`${operator.apiUrl}/ui/events`);

  await using profile = await tempDir("dashboard-bench-profile-");
  const browser = await launchBrowser(profile.path);
  const paints: number[] = [];
  const lives: number[] = [];
  const filters: number[] = [];
  try {
    for (let k = 0; k < loads; k++) {
      const page = await browser.newPage();
      await page.goto(`${operator.apiUrl}/`);
      await page.waitForSelector("body[data-renders]", { timeout: 60_000 });
      const t = await page.evaluate(() => ({
        paint: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1,
        live: (globalThis as unknown as { droverDashboard: { firstRenderMs: number } })
          .droverDashboard.firstRenderMs,
      }));
      paints.push(t.paint);
      lives.push(t.live);
      // A string, not a function: this file is checked without the DOM's types.
      filters.push(
        await page.evaluate<number>(`(async () => {
          const body = document.body;
          const before = Number(body.dataset.renders);
          const input = document.getElementById("label");
          const t0 = performance.now();
          input.value = "site=s3";
          input.dispatchEvent(new Event("input", { bubbles: true }));
          await new Promise((resolve) => {
            const check = () =>
              Number(body.dataset.renders) > before ? resolve() : requestAnimationFrame(check);
            check();
          });
          return performance.now() - t0;
        })()`),
      );
      await page.close();
    }
  } finally {
    await browser.close();
  }
  return {
    date: new Date().toISOString(),
    devices,
    loads,
    firstPaintMs: round(median(paints)),
    firstLiveRenderMs: round(median(lives)),
    filterMs: round(median(filters)),
    pageBytes,
    pageBytesTotal: Object.values(pageBytes).reduce((a, b) => a + b, 0),
    snapshotBytes: snapshot.bytes,
    compressed: snapshot.compressed,
    feedComputeMs: feedComputeMs(devices),
  };
}

/** The RESULTS.md section (pure). */
export function renderSection(r: DashboardBench): string {
  const kib = (n: number) => `${round(n / 1024)} KiB`;
  return `${SECTION_START}
## Dashboard (\`deno run -A bench/dashboard.ts\`)

${r.devices} stand-in devices (registry entries and statuses written into KV) behind a real
\`operator serve\`, the fleet page opened in Debian's chromium (headless) ${r.loads} times, on
${r.date}. Milliseconds after navigation start, medians.

| measure | value |
| --- | --- |
| first contentful paint (server-rendered page, 50 rows and the counts) | ${r.firstPaintMs} ms |
| first live render (event-stream snapshot applied) | ${r.firstLiveRenderMs} ms |
| label filter typed → table re-rendered | ${r.filterMs} ms |
| first page: HTML + app.js + render.js + style.css | ${kib(r.pageBytesTotal)} (${
    Object.entries(r.pageBytes).map(([p, b]) => `${p} ${kib(b)}`).join(", ")
  }) |
| event-stream snapshot (every device, as sent${
    r.compressed ? ", compressed" : ", uncompressed"
  }) | ${kib(r.snapshotBytes)} |
| operator: one live-feed recomputation (view + flatten + diff) | ${r.feedComputeMs} ms |

The operator recomputes at most every 500 ms after changes and once a second while a page is open
(for offline judgement); with no page open it does nothing for the dashboard.
${SECTION_END}
`;
}

/** The dashboard section of a RESULTS.md text, or "" (pure). */
export function sectionOf(markdown: string): string {
  return keptSection(markdown, SECTION_NAME);
}

/** Replaces (or appends) the dashboard section of a RESULTS.md text (pure). */
export function withSection(markdown: string, section: string): string {
  return replaceSection(markdown, SECTION_NAME, section);
}

if (import.meta.main) {
  const arg = (name: string, fallback: number) => {
    const i = Deno.args.indexOf(`--${name}`);
    return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
  };
  const result = await runDashboardBench(arg("devices", 5000), arg("loads", 3));
  console.log(JSON.stringify(result, null, 2));
  await Deno.writeTextFile(
    `${REPO_ROOT}/bench/results-dashboard.json`,
    JSON.stringify(result, null, 2) + "\n",
  );
  const path = `${REPO_ROOT}/bench/RESULTS.md`;
  await Deno.writeTextFile(path, withSection(await Deno.readTextFile(path), renderSection(result)));
  const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", path] }).output();
  if (!fmt.success) console.error(new TextDecoder().decode(fmt.stderr));
  console.log("wrote bench/results-dashboard.json and the Dashboard section of bench/RESULTS.md");
}
