/**
 * `secret set|list|delete`: the operator's secret store. Values are sealed to
 * the operator's key (`DIR/secrets.xk`) before they leave this process, and
 * never printed: `list` shows names, versions, when and who uses them.
 *
 * @module
 */

import type { KV } from "@nats-io/kv";
import {
  type CliIo,
  type Command,
  EXIT,
  InvalidInputError,
  OperationError,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import {
  AUTH_DIR_OPTION,
  authDir,
  OUTPUT_OPTION,
  outputFormat,
  registrySettings,
} from "./_shared.ts";
import { table } from "../views/render.ts";
import { connectNats } from "../nats/connection.ts";
import { ensureBuckets, retryWhileRecovering } from "../nats/kv.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import {
  checkSecretName,
  checkSecretValue,
  ensureSecretsKey,
  latestVersion,
  openSecretsBucket,
  readSecret,
  readSecrets,
  SecretStoreError,
  setSecret,
} from "../secrets/store.ts";
import { deploymentsUsing, readManifests, rollSecretVersion } from "../rollout/secret_versions.ts";
import type { NatsConnection } from "@nats-io/transport-node";

/** One row of `secret list`. */
export interface SecretListEntry {
  name: string;
  version: number;
  /** When the newest version was set (RFC 3339). */
  updated: string;
  /** Deployments whose services reference it. */
  used_by: string[];
}

/** Reads the value of `set` from exactly one of `--from-literal` and `--from-file` (`-`: stdin). */
async function readValue(values: OptionValues, name: string): Promise<Uint8Array> {
  const literal = stringOption(values, "from-literal");
  const file = stringOption(values, "from-file");
  if ((literal === undefined) === (file === undefined)) {
    throw new UsageError(
      "Give the value with exactly one of --from-literal V, --from-file PATH",
      "secret",
    );
  }
  let value: Uint8Array;
  if (literal !== undefined) {
    value = new TextEncoder().encode(literal);
  } else if (file === "-") {
    value = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  } else {
    try {
      value = await Deno.readFile(file!);
    } catch (e) {
      throw new InvalidInputError(`Cannot read ${file}: ${(e as Error).message}`, [], { cause: e });
    }
  }
  try {
    return checkSecretValue(name, value);
  } catch (e) {
    throw new InvalidInputError((e as Error).message, [], { cause: e });
  }
}

async function withOperatorNats<T>(
  values: OptionValues,
  io: CliIo,
  dir: string | undefined,
  fn: (nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const nc = await connectNats(await registrySettings(values, io.env, dir), {
    name: "drover-operator-cli",
  });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

function oneName(rest: string[], sub: string): string {
  const [name] = rest;
  if (name === undefined) throw new UsageError(`Missing NAME: secret ${sub} NAME`, "secret");
  if (rest.length > 1) throw new UsageError(`Unexpected argument "${rest[1]}"`, "secret");
  try {
    return checkSecretName(name);
  } catch (e) {
    throw new InvalidInputError((e as Error).message, [], { cause: e });
  }
}

/** `secret list` rows: every secret with who uses it. */
export async function secretList(secrets: KV, deployments: KV): Promise<SecretListEntry[]> {
  const manifests = [...(await readManifests(deployments)).values()].map((m) => m.manifest);
  return [...(await readSecrets(secrets)).values()].map((record) => ({
    name: record.name,
    version: latestVersion(record),
    updated: record.versions[record.versions.length - 1]?.created_at ?? "",
    used_by: deploymentsUsing(manifests, record.name),
  }));
}

/** The `secret` command. */
export const secretCommand: Command = {
  name: "secret",
  summary: "Set, list and delete the secrets deployments use",
  usage: "secret set NAME --from-literal VALUE | --from-file PATH|- --dir DIR\n" +
    "       drover-operator secret list [-o json]\n" +
    "       drover-operator secret delete NAME",
  description: [
    "Services use a secret with compose's `secrets:` (a file at /run/secrets/NAME by default,",
    "or `{ source: NAME, type: env, target: VAR }`). The value is sealed to the operator's key",
    "(DIR/secrets.xk, created on first use) in this process and stored only sealed; `operator",
    "serve --dir DIR` seals it to each device that runs a deployment using it.",
    "",
    "set     stores a new version (the same value again changes nothing). Every deployment",
    "        using it gets a new revision that goes out through its rollout policy; history",
    '        shows "secret NAME vN". --from-file - reads standard input. NAME is a DNS label.',
    "list    name, version, when it was set and which deployments use it; never the value.",
    "delete  removes it; refused while a deployment uses it.",
    "",
    "They connect to NATS with the usual options; without credentials they use",
    "DIR/operator.creds when it exists.",
  ].join("\n"),
  options: {
    ...AUTH_DIR_OPTION,
    "from-literal": {
      type: "string",
      value: "VALUE",
      description: "The value (set only; prefer --from-file: ps and shell history show arguments)",
    },
    "from-file": {
      type: "string",
      value: "PATH",
      description: 'Read the value from PATH, "-" for standard input (set only)',
      path: {},
    },
    ...OUTPUT_OPTION,
  },
  connects: true,
  async run({ values, positionals, io }) {
    const [sub, ...rest] = positionals;
    const explicitDir = stringOption(values, "dir") ?? io.env("DROVER_AUTH_DIR");
    try {
      switch (sub) {
        case "set": {
          const name = oneName(rest, "set");
          const dir = authDir(values, io.env, "secret");
          const value = await readValue(values, name);
          const key = await ensureSecretsKey(dir);
          return await withOperatorNats(values, io, dir, async (nc) => {
            const secrets = await openSecretsBucket(nc);
            const result = await setSecret(secrets, key, name, value);
            value.fill(0);
            const { deployments } = await ensureBuckets(nc);
            const { history } = await ensureRolloutBuckets(nc);
            // Also after an unchanged set: a deployment an earlier set missed catches up.
            const bumped = await rollSecretVersion(deployments, history, name, result.version);
            io.stdout(
              `secret "${name}" ${
                result.changed ? "set" : "unchanged"
              } (version ${result.version})\n`,
            );
            for (const b of bumped) {
              io.stdout(
                `  deployment "${b.deployment}" revision ${b.revision}: secret ${name} ` +
                  `v${result.version} (goes out through its rollout policy)\n`,
              );
            }
            return EXIT.ok;
          });
        }
        case "list": {
          if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}"`, "secret");
          const format = outputFormat(values, "secret");
          return await withOperatorNats(values, io, explicitDir, async (nc) => {
            const rows = await secretList(
              await openSecretsBucket(nc),
              (await ensureBuckets(nc)).deployments,
            );
            if (format === "json") {
              io.stdout(JSON.stringify(rows, null, 2) + "\n");
            } else if (rows.length === 0) {
              io.stdout('No secrets (add one with "secret set NAME --from-file PATH")\n');
            } else {
              io.stdout(table(
                ["NAME", "VERSION", "UPDATED", "USED BY"],
                rows.map((r) => [r.name, `v${r.version}`, r.updated, r.used_by.join(",") || "-"]),
              ));
            }
            return EXIT.ok;
          });
        }
        case "delete": {
          const name = oneName(rest, "delete");
          return await withOperatorNats(values, io, explicitDir, async (nc) => {
            const secrets = await openSecretsBucket(nc);
            if (await readSecret(secrets, name) === undefined) {
              throw new OperationError(`Cannot delete secret "${name}": it does not exist`);
            }
            const manifests = await readManifests((await ensureBuckets(nc)).deployments);
            const users = deploymentsUsing([...manifests.values()].map((m) => m.manifest), name);
            if (users.length > 0) {
              throw new OperationError(
                `Cannot delete secret "${name}": deployment(s) ${users.join(", ")} use it`,
                ["remove it from their services (or delete them) first"],
              );
            }
            // Purge, not delete: no sealed copy stays behind in the stream.
            await retryWhileRecovering(() => secrets.purge(name));
            io.stdout(`secret "${name}" deleted\n`);
            return EXIT.ok;
          });
        }
        case undefined:
          throw new UsageError("Missing subcommand: secret set|list|delete", "secret");
        default:
          throw new UsageError(
            `Unknown subcommand "secret ${sub}": expected set, list or delete`,
            "secret",
          );
      }
    } catch (e) {
      if (e instanceof SecretStoreError) throw new OperationError(e.message, [], { cause: e });
      throw e;
    }
  },
};
