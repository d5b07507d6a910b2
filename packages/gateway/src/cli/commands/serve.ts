import { constants as osConstants } from "node:os";
import { ConfigError, formatIssue } from "../../config/config-errors.js";
import { configPath, loadConfigFile } from "../../config/config-load.js";
import { errorMessage } from "../../errors.js";
import { createGateway, type Gateway } from "../../main.js";
import { addressInUse, configOption, loadConfigOrExit, parse } from "../cli-support.js";

const usage = `Usage: airlock serve [--config FILE]

Runs the gateway. The config is --config FILE, else $AIRLOCK_CONFIG, else ./airlock.yaml.
On SIGHUP it reads the file again and takes up its rules, agents and reviewers; a file that
changed anything else, or has an error, is refused whole and the running config stays.
Stops gracefully on SIGINT or SIGTERM: no new work, executions under way finish.`;

export async function serve(args: string[]): Promise<number | undefined> {
  const { values } = parse(args, configOption, usage);
  const path = configPath(values.config);
  // SIGHUP's default action ends the process, so it is handled for as long as serve runs: one
  // that comes while the gateway starts is taken up once it serves (the file may have changed
  // since it was read), and one that comes while it stops must not cut the work it finishes.
  // "opening": the gateway is being made (its store may wait for another replica's
  // migration); "starting": it recovers, and runs the approved requests it finds.
  let phase: "opening" | "starting" | "serving" | "stopping" = "opening";
  let gateway: Gateway | undefined;
  let hungUpWhileStarting = false;
  const onHangUp = () => {
    if (phase === "serving" && gateway) void reloadFrom(gateway, path);
    else if (phase === "opening" || phase === "starting") hungUpWhileStarting = true;
    else gateway?.logger.warn("SIGHUP while stopping: no reload, the gateway finishes its work");
  };
  process.on("SIGHUP", onHangUp);
  // SIGINT and SIGTERM too, from the first: one that comes while the gateway starts stops it
  // once started, after the executions its start resumed (before, the signal's default action
  // cut them, and a restart ended them "outcome unknown"). Until then nothing runs: it ends the
  // process at once, as it would have.
  let stopAsked = false;
  const signalled = untilSignal().then((signal) => {
    stopAsked = true;
    if (phase === "opening") process.exit(128 + (osConstants.signals[signal] ?? 15));
    if (phase === "starting")
      gateway?.logger.warn(
        `${signal} while starting: stopping once started, after the work it resumed`,
      );
  });
  try {
    const loaded = loadConfigOrExit(values.config);
    const started = await createGateway(loaded);
    gateway = started;
    phase = "starting";
    try {
      await started.start();
    } catch (error) {
      phase = "stopping";
      await started.close();
      const { port, host } = loaded.config.server;
      throw (
        addressInUse(
          error,
          `port ${port} on ${host}`,
          `stop what listens there (another airlock serve?) or set server.port in ${loaded.source}`,
        ) ?? error
      );
    }
    phase = "serving";
    if (hungUpWhileStarting && !stopAsked) {
      started.logger.info("SIGHUP came while starting: reading the config again");
      void reloadFrom(started, path);
    }
    await signalled;
    phase = "stopping";
    started.logger.info("stopping: finishing work under way");
    await started.close();
    return 0;
  } finally {
    process.off("SIGHUP", onHangUp);
  }
}

/** Resolves on the first SIGINT or SIGTERM, with its name; a second one exits at once. */
export function untilSignal(): Promise<"SIGINT" | "SIGTERM"> {
  return new Promise((resolve) => {
    const stop = (signal: "SIGINT" | "SIGTERM") => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      const force = () => {
        process.stderr.write("airlock: stopping now, without waiting for work under way\n");
        process.exit(130);
      };
      process.once("SIGINT", force);
      process.once("SIGTERM", force);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

/** Reads the config file again and hands it to the gateway; every outcome is logged. */
async function reloadFrom(gateway: Gateway, path: string): Promise<void> {
  const { logger } = gateway;
  let loaded = false;
  try {
    const next = loadConfigFile(path);
    loaded = true;
    for (const warning of next.warnings) logger.warn(`config: ${formatIssue(warning)}`);
    const changes = await gateway.reload(next, "signal:SIGHUP");
    if (!changes) logger.info(`config reload: ${path} changes nothing in force; nothing to do`);
  } catch (error) {
    const problems =
      error instanceof ConfigError ? error.issues.map(formatIssue) : [errorMessage(error)];
    // The gateway counts the refusals it makes; a file that did not load never reached it.
    if (!loaded) gateway.metrics.configReloads.inc({ result: "refused" });
    logger.error(
      { problems },
      `config reload refused; the gateway keeps the config it runs. ${problems.join("; ")}. Fix ${path} and send SIGHUP again`,
    );
  }
}
