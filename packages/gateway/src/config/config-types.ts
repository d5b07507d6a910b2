/** Small zod building blocks shared by the config schema and the connectors' own schemas. */
import { z } from "zod";
import { formatDuration, parseDuration } from "../common/durations.js";
import { detectorNames } from "../masking/detector-names.js";

/**
 * An http:// or https:// URL. `abort` matters: zod 4 runs the refinements that follow even
 * when the URL check fails, and each of those parses the text with `new URL`, which throws.
 */
export function httpUrl() {
  return z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL", abort: true });
}

/** A duration like "15m" or "30s" within bounds, parsed to milliseconds. */
export function duration(bounds: { min: number; max: number }) {
  return z
    .string()
    .max(32)
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `"${text}" is not a duration; write it like 500ms, 30s, 15m, 2h or 7d`,
        });
        return z.NEVER;
      }
      if (ms < bounds.min || ms > bounds.max) {
        ctx.addIssue({
          code: "custom",
          message: `must be between ${formatDuration(bounds.min)} and ${formatDuration(bounds.max)}`,
        });
        return z.NEVER;
      }
      return ms;
    });
}

export const emailSchema = z
  .string()
  .max(254)
  .regex(/^[^\s@]+@[^\s@]+$/, "must be an e-mail address")
  .transform((email) => email.toLowerCase());

export const nameSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    "use letters, digits, '.', '_' and '-', starting with a letter or digit",
  );

export const groupSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\s,]+$/, "a group name has no spaces or commas");

/** `mask.result`: which detectors mask what an action returns. */
export const resultMaskSchema = z
  .array(
    z.enum(detectorNames, {
      error: `must be one of: ${detectorNames.join(", ")}`,
    }),
  )
  .max(detectorNames.length);

/** A connection's defaults for what rules do not say: `mask: { result: [email, card] }`. */
export const connectionMaskSchema = z.strictObject({ result: resultMaskSchema.default([]) });

/** How many bytes of what an action returns are kept: 1 MiB unless set, 1 KiB to 64 MiB. */
export const resultByteCap = z
  .number()
  .int()
  .min(1024)
  .max(64 * 1024 * 1024)
  .default(1024 * 1024);
