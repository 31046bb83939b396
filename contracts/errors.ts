/**
 * Turning zod issues into messages a person can act on.
 *
 * @module
 */

import type { z } from "zod";

/** Formats an issue path as `score.services[0].ports[1]`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) {
      out += out === "" ? segment : `.${segment}`;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out === "" ? "(root)" : out;
}

/**
 * Longest line the formatters here write. Messages quote the rejected value,
 * which can be as large as the input (a 500 kB image name); clipped, a
 * message stays readable and fits in a status value.
 */
export const MAX_ISSUE_LINE_CHARS = 300;

/** Clips `line` to {@linkcode MAX_ISSUE_LINE_CHARS}, saying how long it was. */
export function clipLine(line: string): string {
  if (line.length <= MAX_ISSUE_LINE_CHARS) return line;
  return `${line.slice(0, MAX_ISSUE_LINE_CHARS - 30)}… (${line.length} chars in all)`;
}

/** The message of one issue, with the detail zod keeps in nested issues brought out. */
export function formatIssueMessage(issue: z.core.$ZodIssue): string {
  return clipLine(rawIssueMessage(issue));
}

function rawIssueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  }
  if (issue.code === "invalid_key" || issue.code === "invalid_element") {
    // zod says "Invalid key in record"; the nested issue says what is wrong with it.
    const what = issue.code === "invalid_key" ? "invalid key" : "invalid value";
    return `${what}: ${issue.issues.map((i) => i.message).join("; ")}`;
  }
  return issue.message;
}

/** One line per issue: `"<path>: <message>"`, at most `max` lines. */
export function formatZodIssues(error: z.ZodError, max = 10): string {
  const lines = error.issues.slice(0, max).map((issue) =>
    clipLine(`${formatPath(issue.path)}: ${formatIssueMessage(issue)}`)
  );
  if (error.issues.length > max) lines.push(`… and ${error.issues.length - max} more problem(s)`);
  return lines.join("\n");
}
