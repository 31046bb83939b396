/**
 * `convert -f docker-compose.yml [--name NAME] [--selector k=v]`: prints a
 * Drover manifest for a compose file. The shell around the pure converter
 * (manifests/compose.ts): it reads the file, the `.env` beside it and the
 * config files it names, and prints the manifest on stdout and a warning per
 * key it could not carry on stderr.
 *
 * @module
 */

import { parseDocument, stringify } from "yaml";
import { escapeControl } from "../views/render.ts";
import {
  type Command,
  EXIT,
  InvalidInputError,
  resolvePath,
  stringOption,
  UsageError,
} from "./cli.ts";
import { configFiles, convertCompose, parseDotEnv } from "../manifests/compose.ts";
import { MAX_YAML_MANIFEST_BYTES } from "../manifests/file.ts";

/** The `convert` command. */
export const convertCommand: Command = {
  name: "convert",
  summary: "Print a Drover manifest for a docker-compose file",
  usage: "convert -f FILE [--name NAME] [--selector KEY=VALUE]... [-o yaml|json]",
  description: "Maps every compose key Drover has (docs/workloads.md lists them) and warns on\n" +
    "stderr, naming the key and why, for each one it cannot carry (build, extends,\n" +
    "network_mode: service:x, static addresses, relative bind mounts, …). ${VAR} and\n" +
    "${VAR:-default} are filled from the environment and a .env file beside FILE.\n" +
    "Exit 0 when a manifest was printed (with or without warnings), 3 when nothing\n" +
    "usable remains. Review the output, then: apply -f manifest.yaml.",
  options: {
    file: {
      type: "string",
      short: "f",
      value: "FILE",
      description: "The compose file (docker-compose.yml, compose.yaml)",
      path: {},
    },
    name: {
      type: "string",
      value: "NAME",
      description: "Deployment name (default: the file's name:, else its directory's name)",
    },
    output: {
      type: "string",
      short: "o",
      value: "FORMAT",
      description: '"yaml" (default) or "json"',
    },
    selector: {
      type: "string",
      multiple: true,
      value: "KEY=VALUE",
      description: "Device label the deployment selects; repeat for more (default: no device)",
    },
  },
  connects: false,
  async run({ values, positionals, io }) {
    if (positionals.length > 0) {
      throw new UsageError(`Unexpected argument "${positionals[0]}"`, "convert");
    }
    const file = stringOption(values, "file");
    if (file === undefined) throw new UsageError("Missing -f FILE", "convert");
    const selector = parseSelector(values.selector);
    const format = stringOption(values, "output") ?? "yaml";
    if (format !== "yaml" && format !== "json") {
      throw new UsageError(
        `Invalid output format "${format}": expected "yaml" or "json"`,
        "convert",
      );
    }
    const text = await readText(file);
    if (new TextEncoder().encode(text).length > MAX_YAML_MANIFEST_BYTES) {
      throw new InvalidInputError(
        `Cannot convert ${file}: larger than ${MAX_YAML_MANIFEST_BYTES / 1024} KiB`,
      );
    }
    // Compose files use YAML merge keys (`<<: *common`).
    const doc = parseDocument(text, { merge: true });
    if (doc.errors.length > 0) {
      throw new InvalidInputError(
        `Cannot convert ${file}: not valid YAML`,
        doc.errors.slice(0, 5).map((e) => e.message.split("\n")[0] ?? ""),
      );
    }
    const data = doc.toJS({ maxAliasCount: 100 });
    const dir = resolvePath(`${file}/..`, io.cwd ?? Deno.cwd());
    const dotEnvText = await readOptional(`${dir}/.env`);
    const dotEnv = dotEnvText === undefined ? {} : parseDotEnv(dotEnvText);
    const variable = (name: string) => environment(io.env, name) ?? dotEnv[name];
    const files = new Map<string, string>();
    for (const path of configFiles(data)) {
      const content = await readOptional(resolvePath(path, dir));
      if (content !== undefined) files.set(path, content);
    }
    const result = convertCompose(data, {
      file,
      name: stringOption(values, "name"),
      fallbackName: dir.split("/").filter(Boolean).at(-1) ?? "app",
      selector,
      variable,
      files,
    });
    for (const warning of result.warnings) {
      io.stderr(`warning: ${escapeControl(warning)}\n`);
    }
    if (result.manifest === undefined) {
      io.stderr(`error: nothing usable remains of ${escapeControl(file)}\n`);
      return EXIT.invalid;
    }
    if (format === "json") {
      io.stdout(`${JSON.stringify(result.manifest, null, 2)}\n`);
      return EXIT.ok;
    }
    // YAML 1.1 quoting: `restart: "no"` and `user: "0:20"` stay strings for YAML 1.1 readers.
    const yaml = stringify(result.manifest, { version: "1.1", lineWidth: 0 });
    io.stdout(`# Converted from ${file} by drover-operator convert.\n${yaml}`);
    return EXIT.ok;
  },
};

function parseSelector(value: unknown): Record<string, string> {
  const items = Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = String(item).indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`Invalid --selector "${item}": expected KEY=VALUE`, "convert");
    }
    out[String(item).slice(0, eq)] = String(item).slice(eq + 1);
  }
  return out;
}

async function readText(file: string): Promise<string> {
  try {
    return file === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(file);
  } catch (err) {
    throw new InvalidInputError(
      `Cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** A variable of the environment; undefined when unset or outside the process's --allow-env. */
function environment(env: (name: string) => string | undefined, name: string) {
  try {
    return env(name);
  } catch {
    return undefined;
  }
}

/** Largest `.env` or config file read; a larger one is treated as unreadable. */
const MAX_SIDE_FILE_BYTES = 1024 * 1024;

async function readOptional(path: string): Promise<string | undefined> {
  try {
    if ((await Deno.stat(path)).size > MAX_SIDE_FILE_BYTES) return undefined;
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}
