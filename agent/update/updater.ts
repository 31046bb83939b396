/**
 * The agent's side of self-update: asks the artifact service which version it
 * should run, downloads and verifies that release, stages it next to the
 * running one, switches `current` and asks to be restarted (systemd's
 * `Restart=always` starts the launcher again, which starts the new release on
 * trial). A release on trial commits itself once it has connected, reconciled
 * and reported; if it cannot within `trial_seconds` it writes why and exits,
 * and the launcher switches back. Workloads are never touched: containers run
 * in podman's service, not in this process.
 *
 * The order of writes is what makes a power cut at any point harmless:
 * download → staged dir renamed into `versions/` → `trial` → `current`. Until
 * `current` names the new release the old one starts; once it does, the
 * launcher counts starts on the `trial` marker and rolls back after too many
 * (docs in agent/update/slots.ts and systemd/README.md).
 *
 * @module
 */

import type { Msg, NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "@logtape/logtape";
import {
  type AgentArch,
  type AgentUpdateStatus,
  ARTIFACT_ERROR_HEADER,
  ARTIFACT_RETRY_AFTER_HEADER,
  ARTIFACT_SIZE_HEADER,
  type ArtifactRequest,
  artifactSubject,
  ArtifactTargetReply,
  type ReleaseManifest,
  type UpdateConfig,
} from "@drover/contracts";
import { abortableSleep } from "@drover/common";
import { type Chunk, downloadRelease } from "./download.ts";
import { downgradeRefusal, planUpdate } from "./plan.ts";
import {
  FACTORY_RELEASE,
  formatTrial,
  parseRolledBack,
  parseTrial,
  readOptional,
  removeDurable,
  type RolledBack,
  syncDir,
  type TrialMarker,
  type UpdatePaths,
  updatePaths,
  writeDurable,
} from "./slots.ts";
import { ReleaseRefusedError, verifyRelease } from "./verify.ts";
import { AGENT_VERSION } from "../version.ts";

/** Environment variable the launcher sets to the release it started (`factory` for the installed one). */
export const RELEASE_ENV = "DROVER_AGENT_RELEASE";

/** How long one request to the artifact service may take. */
export const ARTIFACT_REQUEST_TIMEOUT_MS = 15_000;
/** Attempts of one chunk the service refuses only for now (over the device's rate, busy). */
const CHUNK_RETRIES = 5;

/** This machine's architecture as releases name it. */
export function hostArch(): AgentArch {
  return Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
}

/** Options of {@linkcode Updater}. */
export interface UpdaterOptions {
  deviceId: string;
  config: UpdateConfig;
  stateDir: string;
  /** `DROVER_AGENT_RELEASE`: the release this process was started from; undefined without the launcher. */
  release: string | undefined;
  arch?: AgentArch;
  log: Logger;
  /** The update state changed (the status should be published). */
  onChange: () => void;
  /** Stop the agent so that systemd starts the launcher again. */
  requestRestart: (reason: string) => void;
}

/** Self-update for one agent process. */
export class Updater {
  readonly #o: UpdaterOptions;
  readonly #paths: UpdatePaths;
  readonly #arch: AgentArch;
  readonly #refused = new Map<string, string>();
  #rolledBack: RolledBack | undefined;
  #trial: TrialMarker | undefined;
  #wanted: string | null = null;
  #status: AgentUpdateStatus;
  #checking = false;
  #restarting = false;

  constructor(options: UpdaterOptions) {
    this.#o = options;
    this.#paths = updatePaths(options.stateDir);
    this.#arch = options.arch ?? hostArch();
    this.#status = { running: options.release ?? "unmanaged", phase: "idle" };
  }

  /** Where the update files live. */
  get paths(): UpdatePaths {
    return this.#paths;
  }

  /** Whether this process is a release on trial. */
  get onTrial(): boolean {
    return this.#trial !== undefined;
  }

  /** The update part of the status. */
  status(): AgentUpdateStatus {
    return { ...this.#status };
  }

  /** Reads the trial marker and the last rollback. */
  async init(): Promise<void> {
    await Deno.mkdir(this.#paths.dir, { recursive: true, mode: 0o700 });
    const rolled = await readOptional(this.#paths.rolledBack);
    this.#rolledBack = rolled === undefined ? undefined : parseRolledBack(rolled);
    const trialText = await readOptional(this.#paths.trial);
    const trial = trialText === undefined ? undefined : parseTrial(trialText);
    if (trial !== undefined && trial.version === this.#o.release) {
      this.#trial = trial;
      this.#set({ phase: "trial", wanted: trial.version });
      this.#o.log.info(
        "Running release {version} on trial (start {starts}); {seconds} s to prove it",
        {
          version: trial.version,
          starts: trial.starts,
          seconds: this.#o.config.trial_seconds,
        },
      );
    } else if (this.#rolledBack !== undefined) {
      this.#o.log.warn("Release {version} was rolled back: {reason}", { ...this.#rolledBack });
      // The failed release's files go (a download in progress stays: it resumes).
      const failed = this.#rolledBack.version;
      if (failed !== this.#o.release && !failed.startsWith(".")) {
        await Deno.remove(`${this.#paths.versions}/${failed}`, { recursive: true }).catch(() => {});
      }
    }
  }

  #set(patch: Partial<AgentUpdateStatus>, clear: (keyof AgentUpdateStatus)[] = []): void {
    const next: AgentUpdateStatus = { ...this.#status, ...patch };
    for (const key of clear) delete next[key];
    if (JSON.stringify(next) === JSON.stringify(this.#status)) return;
    this.#status = next;
    this.#o.onChange();
  }

  /**
   * Watches the trial until `healthy()` (connected, reconciled, reported):
   * then commits the release; at the deadline, gives up on it.
   */
  async watchTrial(healthy: () => boolean, signal: AbortSignal): Promise<void> {
    if (this.#trial === undefined) return;
    const deadline = Date.now() + this.#o.config.trial_seconds * 1000;
    while (!signal.aborted && Date.now() < deadline) {
      if (healthy()) {
        await this.#commit();
        return;
      }
      await abortableSleep(250, signal);
    }
    if (signal.aborted) return;
    const reason = `release ${this.#trial.version} did not connect, reconcile and report ` +
      `within ${this.#o.config.trial_seconds} s`;
    this.#o.log.error("{reason}; going back to {previous}", {
      reason,
      previous: this.#trial.previous,
    });
    // The launcher rolls back on the next start: mark the trial as used up.
    await writeDurable(this.#paths.trialFailure, reason + "\n");
    await writeDurable(
      this.#paths.trial,
      formatTrial({ ...this.#trial, starts: Number.MAX_SAFE_INTEGER }),
    );
    this.#restarting = true;
    this.#o.requestRestart(reason);
  }

  async #commit(): Promise<void> {
    const trial = this.#trial!;
    await removeDurable(this.#paths.trialFailure);
    await removeDurable(this.#paths.trial);
    this.#trial = undefined;
    if (this.#rolledBack !== undefined) {
      await removeDurable(this.#paths.rolledBack);
      this.#rolledBack = undefined;
    }
    await this.#pruneVersions(new Set([trial.version]));
    this.#o.log.info("Release {version} committed (previous: {previous})", { ...trial });
    this.#set({ phase: "idle" }, ["message", "downloaded", "size"]);
  }

  /** Removes staged releases and downloads other than `keep`. Bounded disk use. */
  async #pruneVersions(keep: ReadonlySet<string>): Promise<void> {
    for (const dir of [this.#paths.versions, this.#paths.download]) {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(dir));
      } catch {
        continue;
      }
      for (const entry of entries) {
        const version = dir === this.#paths.versions ? entry.name : "";
        if (keep.has(version)) continue;
        if (dir === this.#paths.download && [...keep].some((v) => entry.name.startsWith(`${v}-`))) {
          continue;
        }
        await Deno.remove(`${dir}/${entry.name}`, { recursive: true }).catch(() => {});
      }
    }
  }

  /** Asks for the wanted version now and every `check_seconds` until `signal` aborts. */
  async serve(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.#restarting) {
      try {
        await this.check(nc, signal);
      } catch (e) {
        if (signal.aborted) return;
        this.#o.log.warn("Cannot check for an agent update: {error}", {
          error: (e as Error).message,
        });
      }
      await abortableSleep(this.#o.config.check_seconds * 1000, signal);
    }
  }

  /** One check: ask, decide, and if needed fetch, stage and switch. */
  async check(nc: NatsConnection, signal: AbortSignal): Promise<void> {
    if (this.#checking || this.#trial !== undefined || this.#restarting) return;
    this.#checking = true;
    try {
      const reply = await this.#ask(nc, { op: "target", arch: this.#arch });
      const target = ArtifactTargetReply.parse(reply);
      if ("error" in target) throw new Error(`the operator says: ${target.error}`);
      this.#wanted = target.version;
      const step = planUpdate({
        running: this.#o.release,
        wanted: this.#wanted,
        rolledBack: this.#rolledBack,
        refused: this.#refused,
      });
      if (step.kind === "idle") {
        this.#set(
          { phase: "idle", ...(this.#wanted !== null ? { wanted: this.#wanted } : {}) },
          this.#wanted === null
            ? ["wanted", "message", "downloaded", "size"]
            : ["message", "downloaded", "size"],
        );
        return;
      }
      if (step.kind === "failed") {
        this.#set({ phase: "failed", wanted: this.#wanted!, message: step.message }, [
          "downloaded",
          "size",
        ]);
        return;
      }
      if (!("release" in target)) return;
      let manifest: ReleaseManifest;
      try {
        manifest = await verifyRelease(this.#o.config.release_key, target.release, {
          version: step.version,
          arch: this.#arch,
        });
        // The installed agent ("factory") runs the version it was built as.
        const running = this.#o.release === "factory" ? AGENT_VERSION : this.#o.release;
        const downgrade = running === undefined ? undefined : downgradeRefusal(manifest, running);
        if (downgrade !== undefined) throw new ReleaseRefusedError(downgrade);
        await this.#fetch(nc, manifest, signal);
      } catch (e) {
        if (!(e instanceof ReleaseRefusedError)) throw e;
        this.#refused.set(step.version, e.message);
        this.#o.log.error("{message}", { message: e.message });
        this.#set({ phase: "failed", wanted: step.version, message: e.message }, [
          "downloaded",
          "size",
        ]);
        return;
      }
      await this.#switchTo(manifest);
    } finally {
      this.#checking = false;
    }
  }

  async #fetch(nc: NatsConnection, manifest: ReleaseManifest, signal: AbortSignal) {
    const { version, arch } = manifest;
    await Deno.mkdir(this.#paths.download, { recursive: true, mode: 0o700 });
    // Only the running release and this download may take disk space.
    await this.#pruneVersions(new Set([this.#o.release ?? "", version]));
    const part = `${this.#paths.download}/${version}-${arch}.part`;
    this.#set({ phase: "downloading", wanted: version, size: manifest.size, downloaded: 0 }, [
      "message",
    ]);
    this.#o.log.info("Downloading release {version} ({size} bytes)", {
      version,
      size: manifest.size,
    });
    let reported = 0;
    await downloadRelease(part, manifest, (offset) => this.#chunk(nc, version, offset), {
      signal,
      onProgress: (bytes) => {
        // A status per ~10 %: progress without flooding the bucket.
        if (bytes === manifest.size || bytes - reported >= manifest.size / 10 || bytes === 0) {
          reported = bytes;
          this.#set({ downloaded: bytes });
        }
      },
    });
    const staging = `${this.#paths.versions}/.staging-${version}`;
    const finalDir = `${this.#paths.versions}/${version}`;
    await Deno.mkdir(this.#paths.versions, { recursive: true, mode: 0o700 });
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    await Deno.mkdir(staging, { mode: 0o700 });
    const file = manifest.kind === "bundle" ? "drover-agent.bundle.js" : "drover-agent";
    await Deno.rename(part, `${staging}/${file}`);
    await Deno.chmod(`${staging}/${file}`, manifest.kind === "bundle" ? 0o600 : 0o700);
    await syncDir(staging);
    await Deno.remove(finalDir, { recursive: true }).catch(() => {});
    await Deno.rename(staging, finalDir);
    await syncDir(this.#paths.versions);
    this.#set({ phase: "staged", downloaded: manifest.size });
  }

  async #switchTo(manifest: ReleaseManifest): Promise<void> {
    const previous = this.#o.release ?? FACTORY_RELEASE;
    // The marker first: a power cut before `current` changes leaves a stale
    // marker the launcher discards, and the old release starts.
    await writeDurable(
      this.#paths.trial,
      formatTrial({ version: manifest.version, previous, starts: 0 }),
    );
    await removeDurable(this.#paths.trialFailure);
    await writeDurable(this.#paths.current, manifest.version + "\n");
    this.#o.log.info("Switched to release {version}; restarting into it (previous: {previous})", {
      version: manifest.version,
      previous,
    });
    this.#restarting = true;
    this.#o.requestRestart(`update to ${manifest.version}`);
  }

  async #ask(nc: NatsConnection, request: ArtifactRequest): Promise<unknown> {
    return (await this.#request(nc, request)).json();
  }

  /** One artifact request; the operator's refusal (its error header) is thrown. */
  async #request(nc: NatsConnection, request: ArtifactRequest): Promise<Msg> {
    for (let attempt = 1;; attempt++) {
      const msg = await nc.request(
        artifactSubject(this.#o.deviceId),
        new TextEncoder().encode(JSON.stringify(request)),
        { timeout: ARTIFACT_REQUEST_TIMEOUT_MS },
      );
      const error = msg.headers?.get(ARTIFACT_ERROR_HEADER);
      // Refused only for now (its rate, the service's limit): wait as told, a few times.
      const retryAfterMs = Number(msg.headers?.get(ARTIFACT_RETRY_AFTER_HEADER) ?? NaN);
      if (error && Number.isFinite(retryAfterMs) && attempt < CHUNK_RETRIES) {
        await abortableSleep(Math.min(Math.max(retryAfterMs, 0), 10_000));
        continue;
      }
      if (error) throw new Error(`the operator says: ${error}`);
      return msg;
    }
  }

  async #chunk(nc: NatsConnection, version: string, offset: number): Promise<Chunk> {
    const request: ArtifactRequest = { op: "chunk", version, arch: this.#arch, offset };
    const msg = await this.#request(nc, request);
    const size = Number(msg.headers?.get(ARTIFACT_SIZE_HEADER));
    if (!Number.isSafeInteger(size)) throw new Error("chunk reply without a size");
    return { bytes: msg.data, size };
  }
}
