/**
 * What a chaos run records: every KV change it saw (server time), every change
 * the driver made, every fault, podman's containers on the real devices, the
 * processes' memory, schema failures on the wire, the operators' own account of
 * their writes, and the final views. The checker (checker.ts) judges only
 * this, so a saved history (`history.json` in the run's directory) can be
 * checked again. The reducers here are pure.
 *
 * @module
 */

/** A KV change as stored (time: the server's store time, epoch ms). */
export interface KvRecord {
  t: number;
  bucket: string;
  key: string;
  revision: number;
  op: "PUT" | "DEL" | "PURGE";
  /** The part of the value the checker reads ({@linkcode reduceValue}); absent for DEL/PURGE. */
  value?: ReducedValue;
}

/** What the checker keeps of a value, by bucket. */
export type ReducedValue =
  | { kind: "status"; deployments: Record<string, { revision: number; phase: string }> }
  | { kind: "rollout"; revision: number; state: string }
  | { kind: "lease"; holder: string; ttlMs: number }
  | { kind: "other" };

/** One change the driver made through the operator CLI. */
export interface OpRecord {
  seq: number;
  deployment: string;
  kind: string;
  version?: number;
  settle?: boolean;
  startedAt: number;
  endedAt: number;
  /** Exit code of the last attempt; attempts made (a failed CLI call is retried). */
  code: number;
  attempts: number;
  output: string;
}

/** One fault as carried out. */
export interface FaultRecord {
  id: number;
  kind: string;
  /** What it hit: `n2`, `operator-b`, `agent-1`. */
  target: string;
  startedAt: number;
  healedAt?: number;
  /** Why it was not carried out (e.g. the agent was down already). */
  skipped?: string;
}

/** One container of a real device, as podman listed it. */
export interface ContainerInfo {
  id: string;
  deployment: string;
  service: string;
  state: string;
  /** When podman created it (epoch ms), if it said. */
  created?: number;
}

/** Podman's containers of one real device at one moment (this process's clock). */
export interface ContainerSample {
  t: number;
  device: string;
  containers: ContainerInfo[];
}

/** A process's resident memory at one moment; `process` names one incarnation (`agent-0#2`). */
export interface RssSample {
  t: number;
  process: string;
  rssMiB: number;
}

/** A value on the wire that failed its schema. */
export interface SchemaFailure {
  t: number;
  subject: string;
  error: string;
}

/** What an operator process said about itself (its JSON log). */
export interface OperatorLogRecord {
  t: number;
  pid: number;
  kind: "acting" | "standby" | "pass";
  put?: number;
  deleted?: number;
  ms?: number;
}

/** An operator's view of one deployment after the run (HTTP API). */
export interface DeploymentView {
  source: string;
  deployment: string;
  targeted: number;
  ready: number;
}

/** An operator's view of one device after the run (HTTP API). */
export interface DeviceView {
  source: string;
  device: string;
  online: boolean;
}

/** The revisions `operator history NAME -o json` lists at the end. */
export interface HistoryListing {
  deployment: string;
  revisions: number[];
  error?: string;
}

/** Everything one run recorded. */
export interface ChaosHistory {
  seed: number;
  minutes: number;
  /** Epoch ms: start of the chaos window; its end; end of the run. */
  windowStart: number;
  windowEnd: number;
  endedAt: number;
  devices: { id: string; real: boolean }[];
  /** Services each deployment runs (the positive control of the container checks). */
  services: Record<string, string[]>;
  /** (deployment, service) pairs whose spec never changes. */
  constantServices: { deployment: string; service: string }[];
  /** Each deployment's selector labels, and each device's registry labels (what targets what). */
  selectors: Record<string, Record<string, string>>;
  deviceLabels: Record<string, Record<string, string>>;
  kv: KvRecord[];
  /** A heartbeat of a real device was heard (this process's clock). */
  heartbeats: { t: number; device: string }[];
  ops: OpRecord[];
  faults: FaultRecord[];
  containers: ContainerSample[];
  /** Samples taken after the fleet converged (the last word on stray containers). */
  finalContainers: ContainerSample[];
  rss: RssSample[];
  schemaFailures: SchemaFailure[];
  operatorLog: OperatorLogRecord[];
  deploymentViews: DeploymentView[];
  deviceViews: DeviceView[];
  historyListings: HistoryListing[];
  /** Notes from the runner (load, skipped kinds), shown in the report. */
  notes: string[];
}

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** The part of a bucket's value the checker needs. Pure; unknown shapes reduce to `other`. */
export function reduceValue(bucket: string, value: unknown): ReducedValue {
  if (!isRecord(value)) return { kind: "other" };
  if (bucket === "agent-status" && isRecord(value.deployments)) {
    const deployments: Record<string, { revision: number; phase: string }> = {};
    for (const [name, d] of Object.entries(value.deployments)) {
      if (isRecord(d) && typeof d.revision === "number" && typeof d.phase === "string") {
        deployments[name] = { revision: d.revision, phase: d.phase };
      }
    }
    return { kind: "status", deployments };
  }
  if (bucket === "rollouts" && typeof value.revision === "number") {
    return { kind: "rollout", revision: value.revision, state: String(value.state) };
  }
  if (bucket === "operator-leases" && typeof value.holder === "string") {
    return { kind: "lease", holder: value.holder, ttlMs: Number(value.ttl_ms) || 8_000 };
  }
  return { kind: "other" };
}

/**
 * The records of an operator's JSON log (`DROVER_LOG_FORMAT=json`) the checker
 * reads: lease gained and lost, and each pass that wrote desired state. Pure.
 */
export function parseOperatorLog(text: string, pid: number): OperatorLogRecord[] {
  const out: OperatorLogRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      continue;
    }
    const t = Date.parse(String(record["@timestamp"]));
    const message = String(record.message ?? "");
    const p = isRecord(record.properties) ? record.properties : {};
    if (Number.isNaN(t)) continue;
    if (message.startsWith("Holding the operator lease")) out.push({ t, pid, kind: "acting" });
    else if (message.startsWith("Lost the operator lease")) out.push({ t, pid, kind: "standby" });
    else if (message.startsWith("Reconciled desired state")) {
      out.push({
        t,
        pid,
        kind: "pass",
        put: Number(p.put) || 0,
        deleted: Number(p.deleted) || 0,
        ms: Number(p.ms) || 0,
      });
    }
  }
  return out;
}

/** The pid in a lease holder name `operator-<pid>-<suffix>`, or undefined. Pure. */
export function holderPid(holder: string): number | undefined {
  const m = /^operator-(\d+)-/.exec(holder);
  return m ? Number(m[1]) : undefined;
}
