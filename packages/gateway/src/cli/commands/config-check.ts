import { approvalChannelNames } from "../../channels/channel-registry.js";
import { ConfigError, formatIssue } from "../../config/config-errors.js";
import { configPath, loadConfigFile, reviewChannelIssues } from "../../config/config-load.js";
import { configOption, parse } from "../cli-support.js";

export const usage = `Usage: airlock config check [--config FILE]

Validates a config and lists every error with its path. Exits 1 when there is any.
Warnings (a rule that can never match, a quorum no configured reviewers can meet) do not fail
it. The config is --config FILE, else $AIRLOCK_CONFIG, else ./airlock.yaml.`;

export async function configCheck(args: string[]): Promise<number> {
  const { values } = parse(args, configOption, usage);
  const path = configPath(values.config);
  try {
    const loaded = loadConfigFile(path);
    const channelIssues = reviewChannelIssues(loaded, approvalChannelNames(loaded.config));
    if (channelIssues.length > 0) throw new ConfigError(path, channelIssues);
    for (const warning of loaded.warnings)
      process.stdout.write(`warning: ${formatIssue(warning)}\n`);
    const { config } = loaded;
    process.stdout.write(
      `${path} is valid: ${config.agents.length} agent(s), ${config.reviewers.length} reviewer(s), ${Object.keys(config.connections).length} connection(s), ${config.rules.length} rule(s)\n`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stdout.write(`${error.source}: ${error.issues.length} error(s)\n`);
    for (const issue of error.issues) process.stdout.write(`  ${formatIssue(issue)}\n`);
    return 1;
  }
}
