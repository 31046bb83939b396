/**
 * The agent config (`<id>.toml`) that `device add` hands to a new device.
 *
 * @module
 */

import { stringify } from "smol-toml";
import {
  AgentConfig,
  type AgentConfigInput,
  DEFAULT_STATE_DIR,
  formatZodIssues,
} from "@drover/contracts";
import { AuthInputError } from "./errors.ts";

/**
 * Where the device keeps its creds: the path written into its config, and where
 * `systemd/install.sh --creds FILE` installs them (beside the config, 0600).
 */
export const DEVICE_CREDS_PATH = "/etc/drover/nats.creds";

/**
 * Where the device keeps its sealing key (xkey seed): the path written into its config's
 * `[secrets] key`, and where `systemd/install.sh --sealing-key FILE` installs it (0600).
 */
export const DEVICE_SEALING_KEY_PATH = "/etc/drover/sealing.xk";

/** What a device's generated config contains. */
export interface DeviceConfigInput {
  deviceId: string;
  labels: Record<string, string>;
  /** NATS server URLs the agent connects to. */
  servers: string[];
  /** Absolute path of the CA that signed the server certificate, when the server uses TLS. */
  tlsCa?: string;
  /** The release key's public half: agents trust only releases it signed (self-update). */
  releaseKey?: string;
}

/**
 * Renders the agent config as TOML. The result is validated with the agent's
 * own schema, so `device add` can never hand out a config the agent rejects.
 *
 * @throws {AuthInputError} naming the field when the input does not make a valid config.
 */
export function renderDeviceToml(input: DeviceConfigInput): string {
  const config: AgentConfigInput = {
    agent: { device_id: input.deviceId, labels: input.labels, state_dir: DEFAULT_STATE_DIR },
    nats: {
      servers: input.servers,
      creds: DEVICE_CREDS_PATH,
      ...(input.tlsCa !== undefined ? { tls_ca: input.tlsCa } : {}),
    },
    ...(input.releaseKey !== undefined ? { update: { release_key: input.releaseKey } } : {}),
    // Every device gets a sealing key from `device add`: secrets are sealed to it.
    secrets: { key: DEVICE_SEALING_KEY_PATH },
  };
  const checked = AgentConfig.safeParse(config);
  if (!checked.success) {
    throw new AuthInputError(
      `Cannot write an agent config for device "${input.deviceId}": ${
        formatZodIssues(checked.error)
      }`,
    );
  }
  return [
    `# Drover agent config for device "${input.deviceId}", written by "operator device add".`,
    "# The paths are the device's: install the three files there with",
    `#   systemd/install.sh --config ${input.deviceId}.toml --creds ${input.deviceId}.creds \\`,
    `#     --sealing-key ${input.deviceId}.xk`,
    `# (to /etc/drover/agent.toml, ${DEVICE_CREDS_PATH} and ${DEVICE_SEALING_KEY_PATH}, 0600).`,
    '# Add a [podman] socket = "…" section if the podman socket is not /run/podman/podman.sock,',
    "# and a [policy] section to restrict what runs.",
    "",
    stringify(config),
    "",
  ].join("\n");
}
