/**
 * Device-side policy: what this device accepts, whatever the operator sends.
 * Pure checks; a deployment with violations is `failed` and nothing of it is
 * created (its existing containers are left alone, like an invalid value).
 *
 * @module
 */

import {
  type AgentPolicy,
  type DesiredState,
  parseImageReference,
  parsePortMapping,
  parseVolumeMount,
} from "@drover/contracts";
import type { DesiredEntry } from "./desired.ts";

/**
 * Violations of `policy` by one deployment, one readable line each, naming
 * the rule (`policy.allowed_registries`, …). Empty when it is acceptable.
 *
 * @param otherContainers containers already admitted for other deployments,
 *   counted against `max_containers`.
 */
export function checkPolicy(
  state: DesiredState,
  policy: AgentPolicy,
  otherContainers = 0,
): string[] {
  const violations: string[] = [];
  const services = state.score.services;
  for (const service of services) {
    const who = `service "${service.name}"`;
    if (policy.allowed_registries !== undefined) {
      const ref = parseImageReference(service.image);
      const registry = typeof ref === "string" ? undefined : ref.registry.toLowerCase();
      const allowed = policy.allowed_registries.map((r) => r.toLowerCase());
      if (registry === undefined || !allowed.includes(registry)) {
        violations.push(
          `policy.allowed_registries: ${who} uses image "${service.image}" from registry ` +
            `"${registry ?? "?"}", which is not allowed (allowed: ${list(allowed)})`,
        );
      }
    }
    for (const volume of service.volumes ?? []) {
      const mount = parseVolumeMount(volume);
      if (typeof mount === "string" || mount.type !== "bind") continue;
      if (!policy.allowed_host_paths.some((prefix) => isUnderPath(mount.source, prefix))) {
        violations.push(
          `policy.allowed_host_paths: ${who} bind-mounts host path "${mount.source}", ` +
            `which is not under an allowed path (allowed: ${list(policy.allowed_host_paths)}; ` +
            "named volumes are always allowed)",
        );
      }
    }
    if (policy.allowed_host_ports !== undefined) {
      for (const port of service.ports ?? []) {
        const mapping = parsePortMapping(port);
        if (typeof mapping === "string") continue;
        if (mapping.hostPort === undefined) {
          violations.push(
            `policy.allowed_host_ports: ${who} publishes "${port}" without a host port, ` +
              "so podman would pick any port; name an allowed host port",
          );
        } else if (!portAllowed(mapping.hostPort, policy.allowed_host_ports)) {
          violations.push(
            `policy.allowed_host_ports: ${who} publishes host port ${mapping.hostPort}, ` +
              `which is not allowed (allowed: ${list(policy.allowed_host_ports.map(String))})`,
          );
        }
      }
    }
  }
  if (policy.max_containers !== undefined) {
    const total = otherContainers + services.length;
    if (total > policy.max_containers) {
      violations.push(
        `policy.max_containers: this deployment needs ${services.length} container(s) and ` +
          `${otherContainers} are already admitted for other deployments, ` +
          `more than the ${policy.max_containers} allowed`,
      );
    }
  }
  return violations;
}

/**
 * Policy violations of every valid entry, keyed by deployment (only those
 * with violations). For `max_containers`, deployments are admitted in order
 * of their KV revision — first written, first served — so an older
 * deployment never loses its containers to a newer one; a rejected one does
 * not use up slots.
 */
export function policyViolations(
  entries: Iterable<DesiredEntry>,
  policy: AgentPolicy,
): Map<string, string[]> {
  const valid = [...entries].filter((e) => e.kind === "valid")
    .sort((a, b) => a.revision - b.revision || (a.deployment < b.deployment ? -1 : 1));
  const out = new Map<string, string[]>();
  let admitted = 0;
  for (const entry of valid) {
    if (entry.kind !== "valid") continue;
    const violations = checkPolicy(entry.state, policy, admitted);
    if (violations.length > 0) out.set(entry.deployment, violations);
    else admitted += entry.state.score.services.length;
  }
  return out;
}

/**
 * True when `path` is `prefix` or below it, comparing whole path segments
 * (`/srv/data` covers `/srv/data/x` but not `/srv/database`). Lexical only:
 * a symlink below an allowed prefix is the device owner's responsibility.
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
    const [lo, hi] = rule.split("-").map(Number);
    return port >= lo && port <= hi;
  });
}

function list(items: readonly string[]): string {
  return items.length === 0 ? "none" : items.map((i) => `"${i}"`).join(", ");
}
