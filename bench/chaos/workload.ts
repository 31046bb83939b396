/**
 * The workload: which deployments exist, what their manifests look like, and
 * the seeded sequence of changes the driver makes to them (applies, staged
 * rollouts whose canary sometimes fails, undo, delete), ending with a settle
 * step that leaves each deployment in a known final state. Pure.
 *
 * @module
 */

import { Rng } from "./rng.ts";

/** Image every device has: imported into each real agent's podman, held by hollow devices. */
export const CHAOS_IMAGE = "localhost/drover/busybox:bench";

/** Registry labels of every chaos device; real agents add `kind=real`, the canary `role=canary`. */
export const FLEET_LABELS = { chaos: "fleet" } as const;

/** A deployment of the workload and the devices it selects. */
export interface WorkloadDeployment {
  name: string;
  selector: Record<string, string>;
  /** Services whose spec never changes: their containers must keep their ids. */
  constantServices: string[];
  /** Whether the workload changes it (the steady one is applied once and left alone). */
  changes: boolean;
}

/** The deployments of every chaos run. */
export const DEPLOYMENTS: readonly WorkloadDeployment[] = [
  { name: "steady", selector: { ...FLEET_LABELS }, constantServices: ["keep"], changes: false },
  { name: "alpha", selector: { ...FLEET_LABELS }, constantServices: ["side"], changes: true },
  { name: "beta", selector: { kind: "real" }, constantServices: ["side"], changes: true },
  { name: "gamma", selector: { group: "g1" }, constantServices: [], changes: true },
];

/** What one step does to a deployment. */
export type OpKind = "apply" | "staged" | "staged-failing" | "undo" | "delete";

/** One change, at `atMs` from the start of the chaos window (the driver may start it later). */
export interface PlannedOp {
  seq: number;
  atMs: number;
  deployment: string;
  kind: OpKind;
  /** The `web` service's VERSION (apply and staged kinds). */
  version?: number;
  /** What a staged rollout does when its batch misses the threshold. */
  onFailure?: "rollback" | "pause";
  /** Part of the settle step after the chaos window. */
  settle?: boolean;
}

/** Inputs of {@linkcode planWorkload}. */
export interface WorkloadOptions {
  seed: number;
  windowMs: number;
  /** [min, max] ms between two changes (default 6–12 s). */
  gapMs?: [number, number];
}

const OP_WEIGHTS: Record<Exclude<OpKind, "delete" | "undo">, number> & {
  delete: number;
  undo: number;
} = { apply: 35, staged: 25, "staged-failing": 15, undo: 12, delete: 8 };

/**
 * The changes of a run: during the window, one every 6–12 s on a deployment
 * picked at random; then one settle op per changing deployment (a plain apply
 * of a new good version, except the last deployment, which ends deleted).
 * Every deployment is created first (ops 1..n at offset 0). Pure.
 */
export function planWorkload(options: WorkloadOptions): PlannedOp[] {
  const rng = new Rng(options.seed ^ 0x776f726b);
  const [gapLo, gapHi] = options.gapMs ?? [6_000, 12_000];
  const changing = DEPLOYMENTS.filter((d) => d.changes).map((d) => d.name);
  const version = new Map<string, number>();
  /** Good revisions since (re)creation: undo needs an earlier one to go back to. */
  const revisions = new Map<string, number>();
  const exists = new Map<string, boolean>();
  const ops: PlannedOp[] = [];
  const push = (op: Omit<PlannedOp, "seq">) => ops.push({ seq: ops.length + 1, ...op });
  const nextVersion = (d: string) => {
    const v = (version.get(d) ?? 0) + 1;
    version.set(d, v);
    return v;
  };
  for (const d of DEPLOYMENTS) {
    push({ atMs: 0, deployment: d.name, kind: "apply", version: nextVersion(d.name) });
    exists.set(d.name, true);
    revisions.set(d.name, 1);
  }
  const maxOps = Math.ceil(options.windowMs / gapLo) + 1;
  let at = rng.int(gapLo, gapHi);
  for (let i = 0; i < maxOps && at < options.windowMs; i++, at += rng.int(gapLo, gapHi)) {
    const deployment = rng.pick(changing);
    let kind: OpKind = rng.weighted(OP_WEIGHTS);
    if (!exists.get(deployment)) kind = rng.chance(0.5) ? "apply" : "staged";
    else if (kind === "undo" && (revisions.get(deployment) ?? 0) < 2) kind = "apply";
    const op: Omit<PlannedOp, "seq"> = { atMs: at, deployment, kind };
    if (kind === "apply" || kind === "staged" || kind === "staged-failing") {
      op.version = nextVersion(deployment);
    }
    if (kind === "staged" || kind === "staged-failing") {
      op.onFailure = rng.chance(0.7) ? "rollback" : "pause";
    }
    push(op);
    if (kind === "delete") {
      exists.set(deployment, false);
      revisions.set(deployment, 0);
    } else {
      exists.set(deployment, true);
      revisions.set(deployment, (revisions.get(deployment) ?? 0) + 1);
    }
  }
  const last = changing.at(-1);
  for (const deployment of changing) {
    if (deployment === last) {
      push({ atMs: options.windowMs, deployment, kind: "delete", settle: true });
    } else {
      push({
        atMs: options.windowMs,
        deployment,
        kind: "apply",
        version: nextVersion(deployment),
        settle: true,
      });
    }
  }
  return ops;
}

/** The desired final state the settle step leaves: deployment → exists. Pure. */
export function finalDeployments(ops: readonly PlannedOp[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const op of ops) out.set(op.deployment, op.kind !== "delete");
  return out;
}

/** A container that runs until stopped, and stops at once on SIGTERM. */
const SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"];
/** A version whose container exits at once: the canary fails and the rollout stops. */
const FAILING = ["sh", "-c", 'echo "version $VERSION refuses to start"; exit 3'];

/** The manifest an apply-kind op writes (JSON-able). Pure. */
export function manifestFor(deployment: WorkloadDeployment, op: PlannedOp): unknown {
  const service = (name: string, command: string[], env: Record<string, string>) => ({
    name,
    image: CHAOS_IMAGE,
    command,
    env,
    restart: "always",
    stop_timeout: "2s",
  });
  const failing = op.kind === "staged-failing";
  const services = deployment.name === "steady" ? [service("keep", SLEEPER, { ROLE: "steady" })] : [
    service("web", failing ? FAILING : SLEEPER, { VERSION: String(op.version ?? 0) }),
    ...deployment.constantServices.map((s) => service(s, SLEEPER, { ROLE: "constant" })),
  ];
  const staged = op.kind === "staged" || op.kind === "staged-failing";
  return {
    name: deployment.name,
    selector: { labels: deployment.selector },
    score: { type: "PodmanV0", services },
    ...(staged
      ? {
        rollout: {
          batches: [{ limit: 1, selector: { labels: { role: "canary" } } }, { limit: "50%" }],
          success_threshold: "100%",
          batch_timeout: "25s",
          min_ready: "1s",
          on_failure: op.onFailure ?? "rollback",
        },
      }
      : {}),
  };
}
