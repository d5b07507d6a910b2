/**
 * pino, with every known secret value scrubbed from each line before it is written, so a
 * credential that slips into an error message still never reaches the log.
 */
import { type DestinationStream, type Logger as PinoLogger, pino } from "pino";
import type { Redactor } from "../masking/secret-redactor.js";

export type Logger = PinoLogger;

export interface LoggerOptions {
  level?: string;
  redactor?: Pick<Redactor, "redactText">;
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const redactor = options.redactor;
  return pino(
    {
      level: options.level ?? process.env.AIRLOCK_LOG_LEVEL ?? "info",
      base: undefined,
      hooks: redactor ? { streamWrite: (line) => redactor.redactText(line) } : {},
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
