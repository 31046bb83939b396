/**
 * Sections of bench/RESULTS.md that one benchmark writes and the others keep:
 * each sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`, so
 * `deno task bench` can regenerate the file without losing the figures of a
 * benchmark it did not run (the dashboard, fleet scale, footprint breakdown).
 *
 * @module
 */

/** The markers of section `name`. */
export function sectionMarkers(name: string): { start: string; end: string } {
  return { start: `<!-- ${name}:start -->`, end: `<!-- ${name}:end -->` };
}

/** Names of the marked sections of a RESULTS.md text, in their order (pure). */
export function sectionNames(markdown: string): string[] {
  return [...markdown.matchAll(/^<!-- ([\w-]+):start -->$/gm)].map((m) => m[1]!);
}

/** Section `name` of a RESULTS.md text with its markers, or "" (pure). */
export function sectionOf(markdown: string, name: string): string {
  const { start, end } = sectionMarkers(name);
  const from = markdown.indexOf(start);
  const to = markdown.indexOf(end);
  return from >= 0 && to > from ? markdown.slice(from, to + end.length) + "\n" : "";
}

/** `markdown` with section `name` replaced by `section`, or `section` appended (pure). */
export function withSection(markdown: string, name: string, section: string): string {
  const { start, end } = sectionMarkers(name);
  const from = markdown.indexOf(start);
  const to = markdown.indexOf(end);
  if (from >= 0 && to > from) {
    return markdown.slice(0, from) + section.trimEnd() + markdown.slice(to + end.length);
  }
  return `${markdown.trimEnd()}\n\n${section}`;
}
