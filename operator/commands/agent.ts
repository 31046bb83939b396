/**
 * `agent key|publish|rollout`: the fleet's agent releases. `publish` signs an
 * artifact with the release key and stores it in the `agent-releases` Object
 * Store; `rollout` names the version devices should run in `agent-updates`,
 * batch by batch, and follows what the agents report.
 *
 * @module
 */

import { AgentArch, AgentArtifactKind, AgentReleaseVersion, AgentStatus } from "@drover/contracts";
import type { KV } from "@nats-io/kv";
import { abortableSleep } from "@drover/common";
import {
  type Command,
  EXIT,
  OperationError,
  parseDuration,
  resolvePath,
  stringOption,
  UsageError,
} from "./cli.ts";
import { readReleaseKey } from "../auth/mod.ts";
import {
  openReleaseStores,
  publishedArches,
  publishRelease,
  setWantedVersion,
} from "../devices/artifacts.ts";
import { readFleet } from "../fleet/read.ts";
import { openBucket } from "../nats/kv.ts";
import { AUTH_DIR_OPTION, authDir, cliAuthError, labelSelector, withNats } from "./_shared.ts";
import { BUCKET_AGENT_STATUS } from "@drover/contracts";

/** Where one device stands in an agent rollout (pure). */
export type DeviceUpdateOutcome = "done" | "failed" | "waiting";

/** Reads a device's status for `version` (pure). */
export function updateOutcome(
  status: AgentStatus | undefined,
  version: string,
): { outcome: DeviceUpdateOutcome; message?: string } {
  const update = status?.update;
  if (update === undefined) return { outcome: "waiting" };
  if (update.running === version && update.phase !== "trial") return { outcome: "done" };
  if (update.phase === "failed" && update.wanted === version) {
    return { outcome: "failed", message: update.message ?? "failed" };
  }
  return { outcome: "waiting" };
}

function parseChoice<T extends string>(
  schema: { safeParse(v: unknown): { success: boolean; data?: T } },
  text: string | undefined,
  option: string,
  expected: string,
): T {
  if (text === undefined) throw new UsageError(`Missing --${option} (${expected})`, "agent");
  const parsed = schema.safeParse(text);
  if (!parsed.success) {
    throw new UsageError(
      `Invalid --${option} ${JSON.stringify(text)}: expected ${expected}`,
      "agent",
    );
  }
  return parsed.data!;
}

async function readStatus(kv: KV | undefined, device: string): Promise<AgentStatus | undefined> {
  const entry = await kv?.get(device);
  if (entry === null || entry === undefined || entry.operation !== "PUT") return undefined;
  const parsed = AgentStatus.safeParse(entry.json());
  return parsed.success ? parsed.data : undefined;
}

/** The `agent` command. */
export const agentCommand: Command = {
  name: "agent",
  summary: "Publish signed agent releases and roll them out to devices",
  usage: "agent key --dir DIR | agent publish FILE --version V --arch aarch64|x86_64 " +
    "[--kind executable|bundle] [--rollback] --dir DIR | agent rollout --version V " +
    "(--device ID… | -l k=v…) [--batch-size N] [--wait] [--timeout 10m]",
  description: [
    "key      prints the release key's public half for [update] release_key in agent.toml",
    "         (device add writes it into the TOML it generates).",
    "publish  signs FILE (a compiled agent, or dist/drover-agent.bundle.js with --kind bundle)",
    "         with DIR/release.key and stores it in the agent-releases Object Store. An auth",
    "         directory made before releases existed gets its key with --create-key.",
    "         Agents refuse a version older than the one they run unless it was published",
    "         with --rollback (signed as a rollback).",
    "rollout  sets the version the selected devices should run (agent-updates/<device>). Each",
    "         agent downloads, verifies and starts it on trial, and goes back by itself when",
    "         it fails. With --batch-size (implies --wait) devices move N at a time; a failed",
    "         device stops the rollout (exit 1) naming it and its reason.",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    version: { type: "string", value: "V", description: "Release version, e.g. 0.2.0" },
    arch: { type: "string", value: "ARCH", description: "aarch64 or x86_64 (publish)" },
    kind: {
      type: "string",
      value: "KIND",
      description: "executable (default) or bundle (publish)",
    },
    "create-key": {
      type: "boolean",
      description: "Create the release key if the auth directory has none (publish)",
    },
    rollback: {
      type: "boolean",
      description:
        "Sign as a rollback: agents running a newer version accept it (they refuse an older " +
        "version otherwise) (publish)",
    },
    device: {
      type: "string",
      multiple: true,
      value: "ID",
      description: "A device to update (repeatable; rollout)",
    },
    selector: {
      type: "string",
      short: "l",
      multiple: true,
      value: "k=v",
      description: "Registry labels the devices must have (rollout)",
    },
    "batch-size": { type: "string", value: "N", description: "Devices per batch (rollout)" },
    wait: { type: "boolean", description: "Wait until every device runs V (rollout)" },
    timeout: {
      type: "string",
      value: "DURATION",
      description: "How long to wait per batch (default 10m)",
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    const sub = positionals[0];
    if (sub === "key") {
      const dir = authDir(values, io.env, "agent");
      try {
        const key = await readReleaseKey(dir, { create: values["create-key"] === true });
        io.stdout(`${key.publicKey}\n`);
      } catch (e) {
        throw cliAuthError(e);
      }
      return EXIT.ok;
    }
    if (sub === "publish") {
      if (positionals.length > 2) {
        throw new UsageError("agent publish needs exactly one FILE", "agent");
      }
      const [, path] = positionals;
      if (path === undefined) throw new UsageError("agent publish needs exactly one FILE", "agent");
      const file = resolvePath(path, io.cwd ?? Deno.cwd());
      const version = parseChoice(
        AgentReleaseVersion,
        stringOption(values, "version"),
        "version",
        "1-64 of A-Z a-z 0-9 . + _ -",
      );
      const arch = parseChoice(
        AgentArch,
        stringOption(values, "arch"),
        "arch",
        "aarch64 or x86_64",
      );
      const kind = parseChoice(
        AgentArtifactKind,
        stringOption(values, "kind") ?? "executable",
        "kind",
        "executable or bundle",
      );
      let key;
      try {
        key = await readReleaseKey(authDir(values, io.env, "agent"), {
          create: values["create-key"] === true,
        });
      } catch (e) {
        throw cliAuthError(e);
      }
      if (key.created) {
        io.stderr(
          `created the release key; put this into every agent's [update] release_key:\n` +
            `  ${key.publicKey}\n`,
        );
      }
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = await Deno.readFile(file);
      } catch (e) {
        throw new OperationError(`Cannot read ${file}: ${(e as Error).message}`);
      }
      const manifest = await withNats(values, io, async (nc) => {
        const { releases } = await openReleaseStores(nc);
        return await publishRelease(releases, {
          bytes,
          version,
          arch,
          kind,
          signingKey: key.privateKey,
          rollback: values.rollback === true,
        });
      });
      io.stdout(
        `published agent ${manifest.version} for ${manifest.arch} (${manifest.kind}, ` +
          `${manifest.size} bytes, sha256 ${manifest.sha256}` +
          `${manifest.rollback ? ", signed as a rollback" : ""})\n`,
      );
      return EXIT.ok;
    }
    if (sub === "rollout") {
      if (positionals.length > 1) {
        throw new UsageError(`Unexpected argument "${positionals[1]}"`, "agent");
      }
      const version = parseChoice(
        AgentReleaseVersion,
        stringOption(values, "version"),
        "version",
        "1-64 of A-Z a-z 0-9 . + _ -",
      );
      const named = (values.device as string[] | undefined) ?? [];
      const selector = labelSelector(values.selector, "agent");
      if (named.length === 0 && selector === undefined) {
        throw new UsageError("Name the devices: --device ID (repeatable) or -l k=v", "agent");
      }
      const batchText = stringOption(values, "batch-size");
      const batchSize = batchText === undefined ? undefined : Number(batchText);
      if (batchSize !== undefined && (!Number.isSafeInteger(batchSize) || batchSize <= 0)) {
        throw new UsageError(`Invalid --batch-size ${JSON.stringify(batchText)}`, "agent");
      }
      const wait = values.wait === true || batchSize !== undefined;
      const timeoutMs = parseDuration(stringOption(values, "timeout") ?? "10m");
      return await withNats(values, io, async (nc) => {
        const { releases, updates } = await openReleaseStores(nc);
        const arches = await publishedArches(releases, version);
        if (arches.length === 0) {
          throw new OperationError(
            `Release ${version} was never published: run "agent publish FILE --version ` +
              `${version} --arch …" first`,
          );
        }
        const devices = new Set(named);
        if (selector !== undefined) {
          const fleet = await readFleet(nc);
          for (const [id, record] of fleet.registry) {
            const labels = record.labels ?? {};
            if (Object.entries(selector).every(([k, v]) => labels[k] === v)) devices.add(id);
          }
        }
        if (devices.size === 0) throw new OperationError("No registered device matches");
        const ordered = [...devices].sort();
        const size = batchSize ?? ordered.length;
        const statuses = await openBucket(nc, BUCKET_AGENT_STATUS);
        for (let i = 0; i < ordered.length; i += size) {
          const batch = ordered.slice(i, i + size);
          for (const device of batch) await setWantedVersion(updates, device, version);
          io.stdout(
            `agent ${version} (published for ${arches.join(", ")}) wanted on ${batch.join(", ")}\n`,
          );
          if (!wait) continue;
          const deadline = Date.now() + timeoutMs;
          const pending = new Set(batch);
          const failed: string[] = [];
          while (pending.size > 0 && Date.now() < deadline && !io.signal.aborted) {
            for (const device of [...pending]) {
              const { outcome, message } = updateOutcome(
                await readStatus(statuses, device),
                version,
              );
              if (outcome === "waiting") continue;
              pending.delete(device);
              if (outcome === "done") io.stdout(`${device}: running agent ${version}\n`);
              else failed.push(`${device}: ${message}`);
            }
            if (pending.size > 0) await abortableSleep(1000, io.signal);
          }
          if (failed.length > 0 || pending.size > 0) {
            throw new OperationError(
              `Agent rollout of ${version} stopped: ${failed.length} failed, ${pending.size} ` +
                `did not report in time; devices after this batch were not asked`,
              [...failed, ...[...pending].map((d) => `${d}: no report of ${version} in time`)],
            );
          }
        }
        return EXIT.ok;
      });
    }
    throw new UsageError(
      sub === undefined
        ? "Missing subcommand: agent key|publish|rollout"
        : `Unknown subcommand "agent ${sub}": expected key, publish or rollout`,
      "agent",
    );
  },
};
