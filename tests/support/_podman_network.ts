/**
 * A private default network per podman test instance.
 *
 * Podman keeps networks per `network_config_dir`, but the default network it invents when none is
 * configured is always bridge `podman0` with 10.88.0.0/16, and netavark's IPAM database lives in
 * one global place (/run/containers/networks). Parallel instances would share one bridge and
 * subnet and tear it down under each other. So each instance gets a numbered slot: its own bridge
 * (`droverN`), its own /24 and its own network id. The iptables chains stay shared: netavark
 * 1.4 names them after the network *name* (always `podman` here, hence `NETAVARK-1D8721804F16F`
 * and `NETAVARK-DN-1D8721804F16F` for every slot), but each rule in them names the slot's subnet,
 * container address or host port, and a chain is only deleted once empty. A slot is
 * taken by holding an exclusive flock on its slot file; the kernel releases it if the test
 * process dies.
 *
 * @module
 */

import { tempRoot } from "./_owned_dir.ts";
import { runCommand } from "./_exec.ts";
import { HarnessError } from "./errors.ts";

/** Number of network slots, i.e. podman test instances that can run at the same time. */
export const NETWORK_SLOT_COUNT = 250;
/** Second octet of the 10.x.0.0/16 range the slots' /24 subnets are carved from. */
const SUBNET_SECOND_OCTET = 213;

/** A reserved bridge name and subnet. */
export interface NetworkSlot {
  /** Slot number, 0 ≤ index < {@linkcode NETWORK_SLOT_COUNT}. */
  readonly index: number;
  /** Linux bridge interface name. */
  readonly bridge: string;
  /** IPv4 subnet in CIDR form. */
  readonly subnet: string;
  /** Gateway address (the bridge's address). */
  readonly gateway: string;
  /** Gives the slot back. */
  release(): void;
}

/** The bridge, subnet and gateway of slot `index` (pure). */
export function slotAddresses(index: number): { bridge: string; subnet: string; gateway: string } {
  const base = `10.${SUBNET_SECOND_OCTET}.${index}`;
  return { bridge: `drover${index}`, subnet: `${base}.0/24`, gateway: `${base}.1` };
}

/**
 * The subnets podman may give networks created on slot `index`'s instance (an agent's network per
 * deployment): a /22 of its own in 10.214.0.0/14, cut into /26s (pure). Podman picks a new
 * network's subnet from its own networks and the host's live ones only; two instances creating
 * networks at the same moment would both pick 10.89.0.0/24 (before either bridge is up), and the
 * shared IPAM database would then hand out the same addresses twice.
 */
export function slotSubnetPool(index: number): { base: string; size: number } {
  return { base: `10.${214 + Math.floor(index / 64)}.${(index % 64) * 4}.0/22`, size: 26 };
}

/**
 * The netavark network definition (podman's `networks/podman.json`) of a slot, named `podman` so
 * it replaces the built-in default network (pure).
 */
export async function defaultNetworkDefinition(index: number): Promise<Record<string, unknown>> {
  const { bridge, subnet, gateway } = slotAddresses(index);
  // A stable id per slot, so a slot reused after a crash gets the same network again.
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(`drover-test-network-${index}`),
  );
  const id = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return {
    name: "podman",
    id,
    driver: "bridge",
    network_interface: bridge,
    created: "2024-01-01T00:00:00Z",
    subnets: [{ subnet, gateway }],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: false,
    ipam_options: { driver: "host-local" },
  };
}

/**
 * Reserves a free slot whose subnet no other host interface uses.
 *
 * @throws {HarnessError} when all slots are taken.
 */
export async function acquireNetworkSlot(): Promise<NetworkSlot> {
  const routes = (await runCommand("ip", ["-4", "-o", "route", "show"])).stdout;
  const start = Math.floor(Math.random() * NETWORK_SLOT_COUNT);
  for (let step = 0; step < NETWORK_SLOT_COUNT; step++) {
    const index = (start + step) % NETWORK_SLOT_COUNT;
    const { bridge } = slotAddresses(index);
    if (subnetUsedByOtherInterface(routes, index, bridge)) continue;
    const slot = await tryHoldNetworkSlot(index);
    if (slot !== undefined) return slot;
  }
  throw new HarnessError(
    `Cannot reserve a podman test network: all ${NETWORK_SLOT_COUNT} slots under ${slotDirectory()} are in use`,
  );
}

/**
 * Takes slot `index` if no instance holds it, else `undefined`. Whoever holds a slot owns its
 * bridge name: a check that the bridge is gone means something only while holding the slot.
 */
export async function tryHoldNetworkSlot(index: number): Promise<NetworkSlot | undefined> {
  const slotDir = slotDirectory();
  await Deno.mkdir(slotDir, { recursive: true });
  const file = await Deno.open(`${slotDir}/slot-${index}.lock`, { create: true, write: true });
  if (await file.tryLock(true)) {
    return { index, ...slotAddresses(index), release: () => file.close() };
  }
  file.close();
  return undefined;
}

function slotDirectory(): string {
  return `${tempRoot()}/drover-cache/podman-network-slots`;
}

function subnetUsedByOtherInterface(routes: string, index: number, bridge: string): boolean {
  const prefix = `10.${SUBNET_SECOND_OCTET}.${index}.`;
  return routes.split("\n").some((line) =>
    line.startsWith(prefix) && !line.includes(` dev ${bridge} `)
  );
}
