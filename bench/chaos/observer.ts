/**
 * The chaos run's eyes on NATS: follows every bucket the checker judges
 * (desired-state, agent-status, deployments, rollouts, operator-leases) from
 * the first revision, re-watching from the last revision seen after a
 * reconnect or a stall (a node killed under the watch), validates every status
 * and heartbeat against the contracts' schemas, and keeps a live picture for
 * the runner's "has the fleet converged" question.
 *
 * @module
 */

import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import {
  AgentStatus,
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_DESIRED_STATE,
  BUCKET_OPERATOR_LEASES,
  BUCKET_ROLLOUTS,
  decodeJson,
  Heartbeat,
  MAX_HEARTBEAT_BYTES,
} from "@drover/contracts";
import { abortableSleep } from "@drover/common";
import { type KvRecord, reduceValue, type SchemaFailure } from "./history.ts";

/** The buckets the checker reads. */
export const OBSERVED_BUCKETS = [
  BUCKET_DESIRED_STATE,
  BUCKET_AGENT_STATUS,
  BUCKET_DEPLOYMENTS,
  BUCKET_ROLLOUTS,
  BUCKET_OPERATOR_LEASES,
] as const;

/** How often a watch is compared with its stream's last sequence. */
const STALL_CHECK_MS = 5_000;

/** Follows the buckets and heartbeats; see the module doc. */
export class Observer {
  readonly kv: KvRecord[] = [];
  readonly heartbeats: { t: number; device: string }[] = [];
  readonly schemaFailures: SchemaFailure[] = [];
  /** Latest rollout state per deployment. */
  readonly rollouts = new Map<string, { revision: number; state: string }>();
  /** Latest change of each deployment's manifest (`deployments` bucket). */
  readonly manifests = new Map<string, { revision: number; op: string }>();
  /** Lease holder now, if any. */
  leaseHolder: string | undefined;
  readonly desired = new Map<string, number>();
  readonly statuses = new Map<string, Record<string, { revision: number; phase: string }>>();
  /** Statuses and heartbeats validated. */
  validated = { statuses: 0, heartbeats: 0 };
  #nc: NatsConnection | undefined;
  #stop = new AbortController();
  #restart = new Map<string, () => void>();
  #last = new Map<string, number>();
  #loops: Promise<void>[] = [];

  constructor(private readonly realDevices: ReadonlySet<string>) {}

  async start(servers: string[]): Promise<void> {
    const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    this.#nc = nc;
    const kvm = new Kvm(nc);
    for (const bucket of OBSERVED_BUCKETS) {
      // The operator creates the buckets; wait for each (bounded).
      let kv: KV | undefined;
      for (let i = 0; i < 120 && kv === undefined; i++) {
        kv = await kvm.open(bucket).then(async (k) => (await k.status(), k)).catch(() => undefined);
        if (kv === undefined) await abortableSleep(500, this.#stop.signal);
      }
      if (kv === undefined) throw new Error(`bucket ${bucket} did not appear within 60 s`);
      this.#loops.push(this.#follow(bucket, kv));
    }
    const sub = nc.subscribe("drover.heartbeat.>");
    this.#loops.push((async () => {
      for await (const m of sub) {
        const device = m.subject.slice("drover.heartbeat.".length);
        if (m.data.byteLength > MAX_HEARTBEAT_BYTES) {
          this.#schema(m.subject, `heartbeat of ${m.data.byteLength} bytes`);
          continue;
        }
        const decoded = decodeJson(Heartbeat, m.data);
        this.validated.heartbeats++;
        if (!decoded.ok) this.#schema(m.subject, decoded.error);
        if (this.realDevices.has(device)) this.heartbeats.push({ t: Date.now(), device });
      }
    })());
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "reconnect") { for (const restart of this.#restart.values()) restart(); }
      }
    })().catch(() => {});
    this.#loops.push(this.#watchForStalls(nc));
  }

  #schema(subject: string, error: string): void {
    this.schemaFailures.push({ t: Date.now(), subject, error });
  }

  async #follow(bucket: string, kv: KV): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const last = this.#last.get(bucket) ?? 0;
      try {
        const watch = await kv.watch(
          last > 0 ? { resumeFromRevision: last + 1 } : { include: "history" },
        );
        this.#restart.set(bucket, () => watch.stop());
        const onStop = () => watch.stop();
        this.#stop.signal.addEventListener("abort", onStop, { once: true });
        for await (const e of watch) this.#record(bucket, e);
        this.#stop.signal.removeEventListener("abort", onStop);
      } catch {
        // Server gone or stream moving: watch again from the last revision.
      }
      await abortableSleep(250, this.#stop.signal);
    }
  }

  async #watchForStalls(nc: NatsConnection): Promise<void> {
    const behind = new Map<string, number>();
    while (!this.#stop.signal.aborted) {
      await abortableSleep(STALL_CHECK_MS, this.#stop.signal);
      if (this.#stop.signal.aborted) break;
      try {
        const jsm = await jetstreamManager(nc);
        for (const bucket of OBSERVED_BUCKETS) {
          const lastSeq = (await jsm.streams.info(`KV_${bucket}`)).state.last_seq;
          const seen = this.#last.get(bucket) ?? 0;
          // Behind at two checks in a row, with no progress in between: re-watch.
          if (lastSeq > seen && behind.get(bucket) === seen) this.#restart.get(bucket)?.();
          behind.set(bucket, lastSeq > seen ? seen : -1);
        }
      } catch {
        // The cluster is busy electing; look again later.
      }
    }
  }

  #record(bucket: string, e: KvEntry): void {
    if (e.revision <= (this.#last.get(bucket) ?? 0)) return;
    this.#last.set(bucket, e.revision);
    const op = e.operation === "PUT" ? "PUT" : e.operation === "DEL" ? "DEL" : "PURGE";
    const record: KvRecord = {
      t: e.created.getTime(),
      bucket,
      key: e.key,
      revision: e.revision,
      op,
    };
    if (op === "PUT") {
      let json: unknown;
      if (bucket === BUCKET_AGENT_STATUS) {
        const decoded = decodeJson(AgentStatus, e.value);
        this.validated.statuses++;
        if (!decoded.ok) this.#schema(`agent-status/${e.key}`, decoded.error);
        json = decoded.ok ? decoded.value : undefined;
      } else {
        try {
          json = e.json();
        } catch {
          json = undefined;
        }
      }
      record.value = reduceValue(bucket, json);
    }
    this.kv.push(record);
    this.#apply(record);
  }

  #apply(r: KvRecord): void {
    if (r.bucket === BUCKET_DESIRED_STATE) {
      if (r.op === "PUT") this.desired.set(r.key, r.revision);
      else this.desired.delete(r.key);
    } else if (r.bucket === BUCKET_AGENT_STATUS && r.value?.kind === "status") {
      this.statuses.set(r.key, r.value.deployments);
    } else if (r.bucket === BUCKET_ROLLOUTS && r.value?.kind === "rollout") {
      this.rollouts.set(r.key, { revision: r.value.revision, state: r.value.state });
    } else if (r.bucket === BUCKET_DEPLOYMENTS) {
      this.manifests.set(r.key, { revision: r.revision, op: r.op });
    } else if (r.bucket === BUCKET_OPERATOR_LEASES) {
      this.leaseHolder = r.value?.kind === "lease" ? r.value.holder : undefined;
    }
  }

  /** Why `devices` are not (strictly: running) at the desired revision of each key; [] when they are. */
  syncProblems(devices: readonly string[], strict: boolean): string[] {
    const out: string[] = [];
    for (const device of devices) {
      const reported = this.statuses.get(device) ?? {};
      for (const [key, revision] of this.desired) {
        if (!key.startsWith(`${device}.`)) continue;
        const dep = key.slice(device.length + 1);
        const got = reported[dep];
        if (got?.revision !== revision) {
          out.push(`${device}: ${dep} at ${got?.revision ?? "none"}, desired ${revision}`);
        } else if (strict && got.phase !== "running") out.push(`${device}: ${dep} ${got.phase}`);
      }
      for (const dep of Object.keys(reported)) {
        if (!this.desired.has(`${device}.${dep}`)) out.push(`${device}: still reports ${dep}`);
      }
    }
    return out;
  }

  /**
   * Why the settle step is not done: each manifest's latest revision has not completed its
   * rollout, or a deleted deployment still has desired-state keys; [] when done.
   */
  settleProblems(): string[] {
    const out: string[] = [];
    for (const [name, last] of this.manifests) {
      if (last.op === "PUT") {
        const r = this.rollouts.get(name);
        if (r?.revision !== last.revision || r.state !== "complete") {
          out.push(
            `${name}: revision ${last.revision} not complete (rollout ${
              r ? `${r.revision} ${r.state}` : "not seen"
            })`,
          );
        }
      } else if ([...this.desired.keys()].some((k) => k.endsWith(`.${name}`))) {
        out.push(`${name}: deleted, but desired-state keys remain`);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.#stop.abort();
    for (const restart of this.#restart.values()) restart();
    await this.#nc?.close();
    await Promise.allSettled(this.#loops);
  }
}
