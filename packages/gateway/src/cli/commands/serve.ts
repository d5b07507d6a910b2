import { createGateway } from "../../main.js";
import { addressInUse, configOption, loadConfigOrExit, parse } from "../cli-support.js";

const usage = `Usage: airlock serve [--config FILE]

Runs the gateway. The config is --config FILE, else $AIRLOCK_CONFIG, else ./airlock.yaml.
Stops gracefully on SIGINT or SIGTERM: no new work, executions under way finish.`;

export async function serve(args: string[]): Promise<number | undefined> {
  const { values } = parse(args, configOption, usage);
  const loaded = loadConfigOrExit(values.config);
  const gateway = await createGateway(loaded);
  try {
    await gateway.start();
  } catch (error) {
    await gateway.close();
    const { port, host } = loaded.config.server;
    throw (
      addressInUse(
        error,
        `port ${port} on ${host}`,
        `stop what listens there (another airlock serve?) or set server.port in ${loaded.source}`,
      ) ?? error
    );
  }
  await untilSignal();
  gateway.logger.info("stopping: finishing work under way");
  await gateway.close();
  return 0;
}

/** Resolves on the first SIGINT or SIGTERM; a second one while stopping exits at once. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      const force = () => {
        process.stderr.write("airlock: stopping now, without waiting for work under way\n");
        process.exit(130);
      };
      process.once("SIGINT", force);
      process.once("SIGTERM", force);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
