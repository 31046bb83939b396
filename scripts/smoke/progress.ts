/**
 * Step-by-step progress for the smoke run: numbered steps with timings, indented notes, and a
 * PASS/FAIL summary. Formatting is pure; {@linkcode Progress} only adds the clock and output.
 *
 * @module
 */

/** Outcome of one step. */
export interface StepResult {
  /** What the step does, e.g. "Start nats-server". */
  title: string;
  /** "ok" when it finished, "failed" when it threw, "skipped" when an earlier step failed. */
  outcome: "ok" | "failed" | "skipped";
  /** Duration in milliseconds (0 when skipped). */
  ms: number;
  /** The error message of a failed step. */
  error?: string;
}

/** "850 ms", "2.3 s", "1 min 04 s" (pure). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
}

/** The heading line of step `index` (1-based) of `total` (pure). */
export function formatStepStart(index: number, total: number, title: string): string {
  const width = String(total).length;
  return `[${String(index).padStart(width)}/${total}] ${title}`;
}

/** The summary table and verdict (pure). */
export function formatSummary(results: StepResult[], totalMs: number): string {
  const mark = { ok: "ok  ", failed: "FAIL", skipped: "skip" } as const;
  const titleWidth = Math.max(...results.map((r) => r.title.length), 10);
  const lines = results.map((r) =>
    `  ${mark[r.outcome]}  ${r.title.padEnd(titleWidth)}  ${
      r.outcome === "skipped" ? "" : formatDuration(r.ms).padStart(9)
    }`.trimEnd()
  );
  const failed = results.find((r) => r.outcome === "failed");
  const passed = results.every((r) => r.outcome === "ok");
  const verdict = passed
    ? `PASS: ${results.length} steps in ${formatDuration(totalMs)}`
    : `FAIL at "${failed?.title ?? "?"}" after ${formatDuration(totalMs)}: ${failed?.error ?? ""}`;
  return ["", "Summary", ...lines, "", verdict].join("\n");
}

/** Runs steps in order, printing progress; after a failure the remaining steps are skipped. */
export class Progress {
  readonly #titles: string[];
  readonly #write: (line: string) => void;
  readonly #results: StepResult[] = [];
  readonly #startedAt = performance.now();

  /** `titles` lists every step up front, so the numbering and the summary are complete. */
  constructor(titles: string[], write: (line: string) => void = console.log) {
    this.#titles = titles;
    this.#write = write;
  }

  /** True once a step has failed. */
  get failed(): boolean {
    return this.#results.some((r) => r.outcome === "failed");
  }

  /**
   * Runs the step titled `title` (must be one of the constructor's titles); `note` prints an
   * indented detail line. Rethrows the step's error after recording it.
   */
  async step<T>(title: string, run: (note: (line: string) => void) => Promise<T>): Promise<T> {
    const index = this.#titles.indexOf(title);
    if (index < 0) throw new Error(`Cannot run step "${title}": it is not in the step list`);
    this.#write(formatStepStart(index + 1, this.#titles.length, title));
    const started = performance.now();
    const note = (line: string) => {
      for (const part of line.split("\n")) this.#write(`      ${part}`);
    };
    try {
      const value = await run(note);
      const ms = performance.now() - started;
      this.#results.push({ title, outcome: "ok", ms });
      this.#write(`      ok (${formatDuration(ms)})`);
      return value;
    } catch (error) {
      const ms = performance.now() - started;
      const message = error instanceof Error ? error.message : String(error);
      const [firstLine = ""] = message.split("\n");
      this.#results.push({ title, outcome: "failed", ms, error: firstLine });
      this.#write(`      FAILED after ${formatDuration(ms)}: ${message}`);
      throw error;
    }
  }

  /** The summary of every step (unrun steps count as skipped). */
  summary(): string {
    const results = this.#titles.map((title) =>
      this.#results.find((r) => r.title === title) ?? { title, outcome: "skipped" as const, ms: 0 }
    );
    return formatSummary(results, performance.now() - this.#startedAt);
  }
}
