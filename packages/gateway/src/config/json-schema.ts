import { z } from "zod";
import { configSchema } from "./config-schema.js";

/** The JSON Schema of airlock.yaml, for editors; generated from the zod schema. */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...(z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<
      string,
      unknown
    >),
    $id: "https://airlock.dev/schemas/airlock.schema.json",
    title: "Airlock configuration (airlock.yaml)",
  };
}
