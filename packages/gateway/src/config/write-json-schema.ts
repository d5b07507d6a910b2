/** `npm run schema`: regenerates packages/gateway/airlock.schema.json from the zod schema. */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { configJsonSchema } from "./json-schema.js";

const target = fileURLToPath(new URL("../../airlock.schema.json", import.meta.url));
writeFileSync(target, `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
process.stdout.write(`wrote ${target}\n`);
