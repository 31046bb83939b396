/**
 * `deno run -A bench/sealing.ts [--devices N]`: what sealing secrets costs.
 * The operator seals each secret of a deployment once per device copy it
 * writes (operator/desired/sealing.ts); a pass first decides which copies
 * need it from `Sealer.expected` alone. The agent opens each secret once per
 * container create. Measured in-process with the real code on this machine;
 * writes its own section of bench/RESULTS.md (kept by `deno task bench`).
 *
 * @module
 */

import { type SecretRecord } from "@drover/contracts";
import { createSealingKey, openFrom, sealTo } from "@drover/common";
import { Sealer } from "../operator/desired/sealing.ts";
import { REPO_ROOT, run } from "./process.ts";
import { withSection } from "./sections.ts";
import { machineInfo } from "./machine.ts";

const SECTION_NAME = "sealing-bench";
const SIZES = [32, 4096, 65536];

interface Row {
  bytes: number;
  /** µs per device copy sealed (open from the store + seal to the device). */
  sealUs: number;
  /** µs per `expected` (the diff's check, no cryptography). */
  expectedUs: number;
  /** µs per open on the device. */
  openUs: number;
}

async function measure(devices: number, bytes: number): Promise<Row> {
  const operator = createSealingKey();
  const value = crypto.getRandomValues(new Uint8Array(bytes));
  const record: SecretRecord = {
    name: "db",
    key: operator.getPublicKey(),
    versions: [{
      version: 1,
      created_at: new Date().toISOString(),
      sealed: sealTo(operator, operator.getPublicKey(), value),
    }],
  };
  const sealer = new Sealer(operator, new Map([["db", record]]));
  const keys = Array.from({ length: devices }, () => createSealingKey());
  const refs = [{ name: "db", version: 1 }];
  const publicKeys = keys.map((key) => key.getPublicKey());
  let t = performance.now();
  for (const [i, key] of publicKeys.entries()) sealer.expected(`pi-${i}`, key, refs);
  const expectedUs = (performance.now() - t) * 1000 / devices;
  // As a fan-out pass does: the store's version is opened once for the batch.
  t = performance.now();
  const sealed = await sealer.batch(() =>
    Promise.resolve(publicKeys.map((key, i) => sealer.seal(`pi-${i}`, key, refs)[0]!))
  );
  const sealUs = (performance.now() - t) * 1000 / devices;
  const sample = Math.min(devices, 500);
  t = performance.now();
  for (let i = 0; i < sample; i++) {
    const opened = openFrom(keys[i]!, sealed[i]!.sender!, sealed[i]!.sealed!);
    if (opened?.length !== bytes) throw new Error("a sealed copy did not open");
  }
  const openUs = (performance.now() - t) * 1000 / sample;
  return { bytes, sealUs, expectedUs, openUs };
}

function render(devices: number, rows: Row[], machine: string): string {
  const fmt = (x: number) => x < 10 ? x.toFixed(1) : Math.round(x).toString();
  return [
    `<!-- ${SECTION_NAME}:start -->`,
    "## Sealing secrets",
    "",
    `\`deno run -A bench/sealing.ts --devices ${devices}\` on ${machine}, ` +
    `${new Date().toISOString().slice(0, 16)}: one secret sealed to ${devices} devices with the ` +
    "real code (open from the operator's store, seal to each device's xkey); `expected` is the " +
    "fan-out diff's per-key check, which does no cryptography; open is the agent's side.",
    "",
    "| value | seal per device copy | whole fleet | expected per key | open on device |",
    "| ----- | -------------------- | ----------- | ---------------- | -------------- |",
    ...rows.map((r) =>
      `| ${r.bytes} B | ${fmt(r.sealUs)} µs | ${fmt(r.sealUs * devices / 1000)} ms | ` +
      `${fmt(r.expectedUs)} µs | ${fmt(r.openUs)} µs |`
    ),
    "",
    `<!-- ${SECTION_NAME}:end -->`,
    "",
  ].join("\n");
}

async function main(args: string[]): Promise<number> {
  const at = args.indexOf("--devices");
  const devices = at >= 0 ? Number(args[at + 1]) : 5000;
  if (!Number.isInteger(devices) || devices < 1) {
    console.error(`--devices must be a positive integer, not ${args[at + 1]}`);
    return 2;
  }
  await measure(100, 32); // warm-up
  const rows: Row[] = [];
  for (const bytes of SIZES) rows.push(await measure(devices, bytes));
  for (const r of rows) console.log(JSON.stringify(r));
  const info = await machineInfo();
  const machine = `${info.cpuModel} (${info.nproc} CPUs, shared and loaded)`;
  const md = await Deno.readTextFile(`${REPO_ROOT}/bench/RESULTS.md`).catch(() => "");
  await Deno.writeTextFile(
    `${REPO_ROOT}/bench/RESULTS.md`,
    withSection(md, SECTION_NAME, render(devices, rows, machine)),
  );
  await run(Deno.execPath(), ["fmt", "bench/RESULTS.md"]);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
