/**
 * A set of manifests from `-f PATH…`: files as named, directories walked
 * recursively, `-` for standard input. Reading is a thin I/O shell
 * ({@linkcode readManifestTexts}); assembling the set — every file's
 * problems, and two manifests of one name — is pure ({@linkcode manifestSet}).
 *
 * @module
 */

import {
  documentLabel,
  type DocumentProblem,
  type FileManifest,
  parseManifestFile,
} from "./file.ts";

/** What a directory walk picks up; a file named on the command line is read whatever its name. */
export const MANIFEST_EXTENSIONS: readonly string[] = [".yaml", ".yml", ".json", ".toml"];

/** How standard input is named in messages. */
export const STDIN_NAME = "(stdin)";

/** One file's text, named as messages show it. */
export interface ManifestText {
  file: string;
  text: string;
}

/** The texts read, and what could not be read. */
export interface ReadTexts {
  texts: ManifestText[];
  problems: DocumentProblem[];
}

/** True for a name a directory walk reads. Pure. */
export function isManifestFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return MANIFEST_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/**
 * `path` relative to `cwd` when it lies inside it (shorter in tables and
 * errors), else as given. Pure.
 */
export function displayPath(path: string, cwd: string | undefined): string {
  if (cwd === undefined || path === STDIN_NAME) return path;
  const base = cwd.endsWith("/") ? cwd : `${cwd}/`;
  return path.startsWith(base) ? path.slice(base.length) : path;
}

/**
 * Reads every PATH: a file as named; a directory recursively, the files
 * {@linkcode isManifestFileName} accepts, in name order, skipping hidden
 * entries (`.git`) and symbolic links to directories (no loops); `-` reads
 * `readStdin` once. Never throws for a path that cannot be read: it becomes a
 * problem, so every bad path is reported together.
 *
 * @param show how a path is named in messages (e.g. {@linkcode displayPath})
 */
export async function readManifestTexts(
  paths: readonly string[],
  readStdin: () => Promise<string>,
  show: (path: string) => string = (p) => p,
): Promise<ReadTexts> {
  const out: ReadTexts = { texts: [], problems: [] };
  // The whole path: where it was looked for is the point of the message.
  const problem = (file: string, summary: string) =>
    out.problems.push({ file, summary, details: [], unreadable: true });
  const readFile = async (path: string) => {
    try {
      out.texts.push({ file: show(path), text: await Deno.readTextFile(path) });
    } catch (e) {
      problem(path, (e as Error).message);
    }
  };
  const walk = async (dir: string): Promise<number> => {
    const entries: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(dir)) entries.push(entry);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let found = 0;
    for (const entry of entries) {
      if (entry.name.startsWith(".")) continue;
      const path = `${dir}/${entry.name}`;
      let isDirectory = entry.isDirectory;
      let isFile = entry.isFile;
      if (entry.isSymlink) {
        const target = await Deno.stat(path).catch(() => undefined);
        isDirectory = false;
        isFile = target?.isFile ?? false;
      }
      if (isDirectory) found += await walk(path);
      else if (isFile && isManifestFileName(entry.name)) {
        await readFile(path);
        found++;
      }
    }
    return found;
  };
  let stdinRead = false;
  for (const path of paths) {
    if (path === "-") {
      if (stdinRead) continue;
      stdinRead = true;
      try {
        out.texts.push({ file: STDIN_NAME, text: await readStdin() });
      } catch (e) {
        problem(STDIN_NAME, (e as Error).message);
      }
      continue;
    }
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (e) {
      problem(path, (e as Error).message);
      continue;
    }
    if (!info.isDirectory) {
      await readFile(path);
      continue;
    }
    try {
      if (await walk(path) === 0) {
        out.problems.push({
          file: show(path),
          summary: `no ${MANIFEST_EXTENSIONS.join(", ")} file in the directory`,
          details: [],
        });
      }
    } catch (e) {
      problem(path, (e as Error).message);
    }
  }
  return out;
}

/** The manifests of a set, or every problem that keeps it from being applied. */
export interface ManifestSet {
  manifests: FileManifest[];
  problems: DocumentProblem[];
}

/**
 * Parses every text into one set. Problems: each invalid document, each
 * deployment name defined twice (naming both places), and a set with no
 * manifest at all. Pure.
 */
export function manifestSet(
  texts: readonly ManifestText[],
  problems: readonly DocumentProblem[] = [],
): ManifestSet {
  const out: ManifestSet = { manifests: [], problems: [...problems] };
  const byName = new Map<string, FileManifest>();
  for (const { file, text } of texts) {
    const parsed = parseManifestFile(text, file);
    out.problems.push(...parsed.problems);
    for (const entry of parsed.manifests) {
      const first = byName.get(entry.manifest.name);
      if (first === undefined) {
        byName.set(entry.manifest.name, entry);
        out.manifests.push(entry);
        continue;
      }
      out.problems.push({
        file: entry.file,
        ...(entry.document !== undefined ? { document: entry.document } : {}),
        summary: `name: deployment "${entry.manifest.name}" is also defined in ${
          documentLabel(first)
        }`,
        details: [],
      });
    }
  }
  if (out.manifests.length === 0 && out.problems.length === 0) {
    const files = texts.map((t) => t.file).join(", ");
    out.problems.push({ file: files || "(no file)", summary: "no manifest found", details: [] });
  }
  return out;
}
