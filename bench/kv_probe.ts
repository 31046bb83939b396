/**
 * Bottleneck probe for the fleet benchmark: how the cost of a put into the
 * desired-state bucket grows with the number of watch consumers on it. Every
 * agent watches its own keys with one push consumer, so N devices mean N
 * consumers on `KV_desired-state`, and the operator's fan-out writes N keys.
 *
 * Real nats-server; consumers are created as the agents create them
 * (ordered-style push consumers, one key filter each, deliver last per
 * subject) and consumed, from a few connections.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { BUCKET_DESIRED_STATE } from "@drover/contracts";
import { startNats } from "../tests/support/mod.ts";
import { findPid } from "./fleet.ts";
import { cpuPercent, sampleProcess } from "./machine.ts";
import { round } from "./stats.ts";

/** One probe setting. */
export interface ProbeCase {
  consumers: number;
  /** Keys no consumer watches, put before measuring (more distinct subjects in the stream). */
  extraKeys?: number;
  /** Put to keys the consumers watch (each put is delivered once), or to unwatched ones. */
  target?: "watched" | "unwatched";
}

/** One consumer count. */
export interface ProbeRow {
  consumers: number;
  extraKeys: number;
  target: "watched" | "unwatched";
  puts: number;
  /** Puts per second with {@linkcode CONCURRENCY} in flight, as the operator writes. */
  putsPerSecond: number;
  /** Mean time per put, ms (wall time / puts). */
  msPerPut: number;
  natsCpuPercent: number;
}

/** Writes in flight, as the operator's `DEFAULT_WRITE_CONCURRENCY`. */
export const CONCURRENCY = 64;

/** Measures put throughput with each consumer count in `counts`. */
export async function runKvProbe(
  cases: (number | ProbeCase)[],
  puts: number,
  progress: (s: string) => void,
): Promise<ProbeRow[]> {
  const rows: ProbeRow[] = [];
  for (const c of cases) {
    const { consumers, extraKeys = 0, target = "watched" } = typeof c === "number"
      ? { consumers: c }
      : c;
    await using nats = await startNats();
    const pid = await findPid(nats.configPath);
    const writer = await connect({ servers: nats.url });
    const watchers: NatsConnection[] = [];
    try {
      const kv = await new Kvm(writer).create(BUCKET_DESIRED_STATE, { history: 5 });
      // Consumers spread over a few connections, each filtered to one device's keys.
      for (let c = 0; c < 4; c++) watchers.push(await connect({ servers: nats.url }));
      for (let i = 0; i < consumers; i++) {
        // Four watchers were connected just above, so the index is in range.
        const js = jetstream(watchers[i % watchers.length]!);
        const consumer = await js.consumers.getPushConsumer(`KV_${BUCKET_DESIRED_STATE}`, {
          filter_subjects: `$KV.${BUCKET_DESIRED_STATE}.dev-${i}.>`,
          deliver_policy: DeliverPolicy.LastPerSubject,
        });
        const messages = await consumer.consume();
        (async () => {
          for await (const _ of messages) { /* drain */ }
        })().catch(() => {});
      }
      await forEachInFlight(extraKeys, async (i) => {
        await kv.put(`other-${i}.app`, "{}");
      });
      const before = pid === undefined ? undefined : await sampleProcess(pid);
      const t0 = performance.now();
      await forEachInFlight(puts, async (i) => {
        const key = target === "watched"
          ? `dev-${i % Math.max(1, consumers || puts)}.app`
          : `unwatched-${i}.app`;
        await kv.put(key, `{"n":${i}}`);
      });
      const seconds = (performance.now() - t0) / 1000;
      const after = pid === undefined ? undefined : await sampleProcess(pid);
      const row: ProbeRow = {
        consumers,
        extraKeys,
        target,
        puts,
        putsPerSecond: round(puts / seconds),
        msPerPut: Math.round((seconds * 1e6) / puts) / 1000,
        natsCpuPercent: before && after ? round(cpuPercent(before, after)) : NaN,
      };
      progress(
        `kv probe: ${consumers} consumers, ${extraKeys} extra keys, puts to ${target} keys: ` +
          `${row.putsPerSecond} puts/s, ` +
          `nats-server CPU ${row.natsCpuPercent} %`,
      );
      rows.push(row);
    } finally {
      for (const w of watchers) await w.close();
      await writer.close();
    }
  }
  return rows;
}

/** Runs `fn(0 … count-1)` with {@linkcode CONCURRENCY} calls in flight. */
async function forEachInFlight(count: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

if (import.meta.main) {
  const counts = (Deno.args[0] ?? "0,1000,5000").split(",").map(Number);
  console.log(await runKvProbe(counts, Number(Deno.args[1] ?? 5000), console.log));
  Deno.exit(0);
}
