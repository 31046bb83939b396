/**
 * `deno run -A --v8-flags=--max-semi-space-size=1,--lite-mode,--expose-gc
 * bench/import_rss.ts MODULE…`: imports the modules, settles 1.5 s, collects
 * garbage and prints VmRSS and the V8 heap — what loading that code costs a
 * device, for the footprint breakdown in bench/RESULTS.md (±2 MiB between runs:
 * take several). Run it from the repository root so the workspace's imports resolve.
 *
 * @module
 */

for (const module of Deno.args) {
  await import(
    /^(npm:|jsr:|node:|@)/.test(module) ? module : new URL(module, `file://${Deno.cwd()}/`).href
  );
}
await new Promise((r) => setTimeout(r, 1500));
(globalThis as { gc?: () => void }).gc?.();
await new Promise((r) => setTimeout(r, 300));
const status = Deno.readTextFileSync("/proc/self/status");
const rssMiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN) / 1024;
const heap = Deno.memoryUsage();
console.log(
  `${rssMiB.toFixed(1)} MiB RSS, heap used ${(heap.heapUsed / 2 ** 20).toFixed(1)} MiB — ${
    Deno.args.join(" ") || "(nothing)"
  }`,
);
