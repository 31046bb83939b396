/**
 * Device-side policy: what this device accepts, whatever the operator sends.
 * Pure checks; a deployment with violations is `failed` and nothing of it is
 * created (its existing containers are left alone, like an invalid value).
 *
 * Bind mounts are checked against the file system as it is, not as the text
 * says: a service with a read-write bind of an allowed `/srv/data` could plant
 * `/srv/data/x -> /`, and a later bind of `/srv/data/x` would be a bind of `/`.
 * `resolveHostPaths` (host_paths.ts, the I/O step) resolves each bind source
 * and allowed prefix with `realpath` just before the check; the check then
 * wants the source to exist and to resolve to exactly its allowed prefix's
 * real path plus the same remaining segments — no symlink anywhere below the
 * prefix (a symlinked prefix itself is the device owner's choice and allowed).
 *
 * What this cannot close (time of check to time of use): the bind is resolved
 * again by the OCI runtime when the container starts, and at every restart
 * podman makes under its restart policy, without Drover in between. A service
 * that can write into an allowed directory can still swap a checked directory
 * for a symlink after the check, and a later (re)start of a container binding
 * it follows the link; the next reconcile pass (at the latest the periodic
 * resync) then marks the deployment failed but does not stop what runs. Keep
 * read-write binds in directories no other bind source lies under.
 *
 * @module
 */

import {
  type AgentPolicy,
  canonicalCapability,
  type DesiredState,
  formatBytes,
  normalizeImageReference,
  parseByteSize,
  parseDeviceMapping,
  parsePortMapping,
  parseVolumeMount,
} from "@drover/contracts";
import type { DesiredEntry } from "./desired.ts";

/** What the device's file system says about one absolute host path, just before the check. */
export type HostPathFact =
  /** `realpath` succeeded: every symlink resolved. */
  | { kind: "resolved"; realPath: string }
  /** Nothing there (or a dangling symlink). */
  | { kind: "missing" }
  /** The agent's Deno permissions do not include reading the path. */
  | { kind: "no-permission" }
  /** Any other failure (a symlink loop, EACCES, …). */
  | { kind: "unreadable"; error: string };

/** Facts per path, from `resolveHostPaths`; keys as written in specs and config. */
export type HostPathFacts = ReadonlyMap<string, HostPathFact>;

/** A device-policy rule, named as in the config's `[policy]` table. */
export type PolicyRule =
  | "allowed_registries"
  | "allowed_host_paths"
  | "allowed_host_ports"
  | "max_containers"
  | "allowed_devices"
  | "allowed_capabilities"
  | "allow_host_network"
  | "max_mem_limit"
  | "require_mem_limit"
  /** Not a `[policy]` rule: the deployment's secrets cannot be opened on this device. */
  | "secrets";

/**
 * One broken rule. `message` is for people (it starts with `policy.<rule>:`);
 * code decides on `rule`, never on the text.
 */
export interface PolicyViolation {
  rule: PolicyRule;
  message: string;
}

function violation(rule: PolicyRule, message: string): PolicyViolation {
  return { rule, message };
}

const NO_FACTS: HostPathFacts = new Map();

/**
 * Violations of `policy` by one deployment, one readable line each, naming
 * the rule (`policy.allowed_registries`, …). Empty when it is acceptable.
 *
 * @param otherContainers containers already admitted for other deployments,
 *   counted against `max_containers`.
 * @param hostPaths facts about bind sources and allowed prefixes
 *   ({@linkcode hostPathsToResolve}); a bind whose facts are absent is refused.
 */
export function checkPolicy(
  state: DesiredState,
  policy: AgentPolicy,
  otherContainers = 0,
  hostPaths: HostPathFacts = NO_FACTS,
): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  const services = state.score.services;
  for (const service of services) {
    const who = `service "${service.name}"`;
    if (policy.allowed_registries !== undefined) {
      // The registry of the fully qualified name, which is what podman is given: a short
      // name is docker.io's, never whatever podman's aliases or local images would make of it.
      const ref = normalizeImageReference(service.image);
      const registry = typeof ref === "string" ? undefined : ref.registry;
      const allowed = policy.allowed_registries.map((r) => r.toLowerCase());
      if (registry === undefined || !allowed.includes(registry)) {
        const qualified = typeof ref === "string" || ref.name === service.image
          ? ""
          : ` (${ref.name})`;
        violations.push(
          violation(
            "allowed_registries",
            `policy.allowed_registries: ${who} uses image "${service.image}"${qualified} from ` +
              `registry "${registry ?? "?"}", which is not allowed (allowed: ${list(allowed)})`,
          ),
        );
      }
    }
    for (const volume of service.volumes ?? []) {
      const mount = parseVolumeMount(volume);
      if (typeof mount === "string" || mount.type !== "bind") continue;
      const prefixes = policy.allowed_host_paths.filter((p) => isUnderPath(mount.source, p));
      if (prefixes.length === 0) {
        violations.push(
          violation(
            "allowed_host_paths",
            `policy.allowed_host_paths: ${who} bind-mounts host path "${mount.source}", ` +
              `which is not under an allowed path (allowed: ${list(policy.allowed_host_paths)}; ` +
              "named volumes are always allowed)",
          ),
        );
        continue;
      }
      const problem = resolvedProblem(mount.source, prefixes, hostPaths);
      if (problem !== undefined) {
        violations.push(
          violation(
            "allowed_host_paths",
            `policy.allowed_host_paths: ${who} bind-mounts host path "${mount.source}", ${problem}`,
          ),
        );
      }
    }
    if (policy.allowed_host_ports !== undefined) {
      for (const port of service.ports ?? []) {
        const mapping = parsePortMapping(port);
        if (typeof mapping === "string") continue;
        if (mapping.hostPort === undefined) {
          violations.push(
            violation(
              "allowed_host_ports",
              `policy.allowed_host_ports: ${who} publishes "${port}" without a host port, ` +
                "so podman would pick any port; name an allowed host port",
            ),
          );
        } else if (!portAllowed(mapping.hostPort, policy.allowed_host_ports)) {
          violations.push(
            violation(
              "allowed_host_ports",
              `policy.allowed_host_ports: ${who} publishes host port ${mapping.hostPort}, ` +
                `which is not allowed (allowed: ${list(policy.allowed_host_ports.map(String))})`,
            ),
          );
        }
      }
    }
    violations.push(...hostPowerViolations(service, policy));
  }
  if (policy.max_containers !== undefined) {
    const total = otherContainers + services.length;
    if (total > policy.max_containers) {
      violations.push(
        violation(
          "max_containers",
          `policy.max_containers: this deployment needs ${services.length} container(s) and ` +
            `${otherContainers} are already admitted for other deployments, ` +
            `more than the ${policy.max_containers} allowed`,
        ),
      );
    }
  }
  return violations;
}

/**
 * What a service asks of the host beyond its own box — devices, added
 * capabilities, the host network, memory — against the policy. Defaults deny:
 * no devices, no added capabilities, no host network.
 */
function hostPowerViolations(
  service: DesiredState["score"]["services"][number],
  policy: AgentPolicy,
): PolicyViolation[] {
  const who = `service "${service.name}"`;
  const out: PolicyViolation[] = [];
  const allowedDevices = policy.allowed_devices ?? [];
  for (const device of service.devices ?? []) {
    const mapping = parseDeviceMapping(device);
    if (typeof mapping === "string") continue;
    if (!allowedDevices.some((pattern) => matchesGlob(mapping.host, pattern))) {
      out.push(violation(
        "allowed_devices",
        `policy.allowed_devices: ${who} maps host device "${mapping.host}", which is not ` +
          `allowed (allowed: ${list(allowedDevices)})`,
      ));
    }
  }
  const allowedCaps = new Set((policy.allowed_capabilities ?? []).map(canonicalCapability));
  for (const cap of service.cap_add ?? []) {
    if (!allowedCaps.has(canonicalCapability(cap))) {
      out.push(violation(
        "allowed_capabilities",
        `policy.allowed_capabilities: ${who} adds capability ${canonicalCapability(cap)}, ` +
          `which is not allowed (allowed: ${list([...allowedCaps])})`,
      ));
    }
  }
  if (service.network_mode === "host" && policy.allow_host_network !== true) {
    out.push(violation(
      "allow_host_network",
      `policy.allow_host_network: ${who} asks for the host network, which this device ` +
        "does not allow",
    ));
  }
  const memory = service.mem_limit === undefined ? undefined : parseByteSize(service.mem_limit);
  if (memory === undefined && policy.require_mem_limit === true) {
    out.push(violation(
      "require_mem_limit",
      `policy.require_mem_limit: ${who} has no mem_limit; this device wants every ` +
        "container capped",
    ));
  }
  const max = policy.max_mem_limit === undefined ? undefined : parseByteSize(policy.max_mem_limit);
  if (typeof memory === "number" && typeof max === "number" && memory > max) {
    out.push(violation(
      "max_mem_limit",
      `policy.max_mem_limit: ${who} asks for mem_limit ${formatBytes(memory)}, more than ` +
        `the ${formatBytes(max)} allowed`,
    ));
  }
  return out;
}

/**
 * True when `path` matches the glob `pattern`: `*` is any run of characters
 * other than `/`, `?` one such character, everything else itself.
 */
export function matchesGlob(path: string, pattern: string): boolean {
  const source = [...pattern].map((ch) =>
    ch === "*" ? "[^/]*" : ch === "?" ? "[^/]" : ch.replace(/[.+^${}()|[\]\\]/g, "\\$&")
  ).join("");
  return new RegExp(`^${source}$`).test(path);
}

/**
 * Policy violations of every valid entry, keyed by deployment (only those
 * with violations). For `max_containers`, deployments are admitted in order
 * of their KV revision — first written, first served — so an older
 * deployment never loses its containers to a newer one; a rejected one does
 * not use up slots. `hostPaths` as for {@linkcode checkPolicy}.
 */
export function policyViolations(
  entries: Iterable<DesiredEntry>,
  policy: AgentPolicy,
  hostPaths: HostPathFacts = NO_FACTS,
): Map<string, PolicyViolation[]> {
  const valid = [...entries].filter((e) => e.kind === "valid")
    .sort((a, b) => a.revision - b.revision || (a.deployment < b.deployment ? -1 : 1));
  const out = new Map<string, PolicyViolation[]>();
  let admitted = 0;
  for (const entry of valid) {
    if (entry.kind !== "valid") continue;
    const violations = checkPolicy(entry.state, policy, admitted, hostPaths);
    if (violations.length > 0) out.set(entry.deployment, violations);
    else admitted += entry.state.score.services.length;
  }
  return out;
}

/**
 * Why a bind of `source`, lexically under `prefixes`, is refused on the facts;
 * `undefined` when it resolves to an allowed prefix's real path plus the same
 * remaining segments. Pure.
 */
function resolvedProblem(
  source: string,
  prefixes: readonly string[],
  facts: HostPathFacts,
): string | undefined {
  const fact = facts.get(source);
  const grant = `--allow-read=${prefixes[0]}`;
  if (fact === undefined) return "which was not checked on this device's file system";
  switch (fact.kind) {
    case "missing":
      return "which does not exist on this device; create it there first";
    case "no-permission":
      return `which the agent cannot check: its Deno permissions lack read access to it ` +
        `(grant ${grant} to the agent; see the README's Security model)`;
    case "unreadable":
      return `which the agent cannot check: ${fact.error}`;
  }
  const rest = segments(source)!;
  const problems: string[] = [];
  for (const prefix of prefixes) {
    const prefixFact = facts.get(prefix);
    if (prefixFact?.kind !== "resolved") {
      problems.push(
        `allowed path "${prefix}" cannot be resolved (${prefixFact?.kind ?? "unchecked"})`,
      );
      continue;
    }
    const expected = joinPath(prefixFact.realPath, rest.slice(segments(prefix)!.length));
    if (fact.realPath === expected) return undefined;
  }
  if (problems.length === prefixes.length) return `which cannot be checked: ${problems.join("; ")}`;
  return `which is or passes through a symlink below the allowed path (it resolves to ` +
    `"${fact.realPath}"); bind the real directory instead`;
}

/**
 * The paths {@linkcode checkPolicy} wants facts about: every bind source of a
 * valid entry that is lexically under an allowed prefix, and those prefixes.
 * Pure.
 */
export function hostPathsToResolve(
  entries: Iterable<DesiredEntry>,
  policy: AgentPolicy,
): Set<string> {
  const out = new Set<string>();
  if (policy.allowed_host_paths.length === 0) return out;
  for (const entry of entries) {
    if (entry.kind !== "valid") continue;
    for (const service of entry.state.score.services) {
      for (const volume of service.volumes ?? []) {
        const mount = parseVolumeMount(volume);
        if (typeof mount === "string" || mount.type !== "bind") continue;
        const prefixes = policy.allowed_host_paths.filter((p) => isUnderPath(mount.source, p));
        if (prefixes.length === 0) continue;
        out.add(mount.source);
        for (const prefix of prefixes) out.add(prefix);
      }
    }
  }
  return out;
}

function joinPath(base: string, rest: readonly string[]): string {
  const parts = [...segments(base) ?? [], ...rest];
  return `/${parts.join("/")}`;
}

/**
 * True when `path` is `prefix` or below it, comparing whole path segments
 * (`/srv/data` covers `/srv/data/x` but not `/srv/database`). Lexical only:
 * {@linkcode checkPolicy} adds the file system's view (symlinks) from facts.
 */
export function isUnderPath(path: string, prefix: string): boolean {
  const p = segments(path);
  const base = segments(prefix);
  if (p === undefined || base === undefined || base.length > p.length) return false;
  return base.every((seg, i) => p[i] === seg);
}

function segments(path: string): string[] | undefined {
  if (!path.startsWith("/")) return undefined;
  const parts = path.split("/").filter((s) => s !== "" && s !== ".");
  // ".." is rejected by the volume parser; refuse it here too rather than resolve it.
  return parts.includes("..") ? undefined : parts;
}

function portAllowed(port: number, allowed: ReadonlyArray<number | string>): boolean {
  return allowed.some((rule) => {
    if (typeof rule === "number") return rule === port;
    // Rules are validated as "low-high"; NaN never matches, as a missing bound should not.
    const [lo = NaN, hi = NaN] = rule.split("-").map(Number);
    return port >= lo && port <= hi;
  });
}

function list(items: readonly string[]): string {
  return items.length === 0 ? "none" : items.map((i) => `"${i}"`).join(", ");
}
