/**
 * What the numbers were measured on (CPU, memory, tool versions) and how a
 * process's CPU time and memory are read from /proc.
 *
 * @module
 */

/** The machine and tool versions, for the results header. */
export interface MachineInfo {
  date: string;
  hostname: string;
  kernel: string;
  arch: string;
  nproc: number;
  cpuModel: string;
  memoryMiB: number;
  versions: { deno: string; podman: string; natsServer: string };
}

/** Reads the machine description and tool versions. */
export async function machineInfo(): Promise<MachineInfo> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? NaN);
  return {
    date: new Date().toISOString(),
    hostname: Deno.hostname(),
    kernel: Deno.osRelease(),
    arch: Deno.build.arch,
    nproc: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    memoryMiB: Math.round(memKb / 1024),
    versions: {
      deno: Deno.version.deno,
      podman: await firstLine("podman", ["--version"]),
      natsServer: await firstLine("nats-server", ["--version"]),
    },
  };
}

async function firstLine(command: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout).trim() ||
      new TextDecoder().decode(out.stderr).trim();
    return text.split("\n")[0] ?? "";
  } catch (e) {
    return `unavailable (${(e as Error).message})`;
  }
}

/** CPU time and memory of one process at one moment. */
export interface ProcSample {
  /** When, in ms (performance.now()). */
  at: number;
  /** user + system CPU time, in ms. */
  cpuMs: number;
  /** Resident set size, in MiB. */
  rssMiB: number;
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** Reads CPU time and RSS of `pid` from /proc; undefined once it is gone. */
export async function sampleProcess(pid: number): Promise<ProcSample | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    // Fields after the command name (which may contain spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    return {
      at: performance.now(),
      cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND,
      rssMiB: rssKb / 1024,
    };
  } catch {
    return undefined;
  }
}

/** CPU use between two samples, in percent of one core. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  return ((b.cpuMs - a.cpuMs) / (b.at - a.at)) * 100;
}

/** The parts of nats-server's `/varz` the benchmarks report. */
export interface Varz {
  cpu: number;
  mem: number;
  connections: number;
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
  subscriptions: number;
  version: string;
}

/** Fetches nats-server's `/varz` monitoring page. */
export async function varz(monitorUrl: string): Promise<Varz> {
  const res = await fetch(`${monitorUrl}/varz`);
  if (!res.ok) throw new Error(`Cannot read ${monitorUrl}/varz: HTTP ${res.status}`);
  return await res.json() as Varz;
}

/** Number of consumers nats-server reports (`/jsz`). */
export async function jszConsumers(monitorUrl: string): Promise<number> {
  const res = await fetch(`${monitorUrl}/jsz`);
  if (!res.ok) throw new Error(`Cannot read ${monitorUrl}/jsz: HTTP ${res.status}`);
  return ((await res.json()) as { consumers?: number }).consumers ?? NaN;
}
