/** The OpenAPI 3.1 document, generated from the routes' own zod schemas. */
import { z } from "zod";
import type { RouteSpec } from "./route.js";

const errorSchema = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: {
          type: "string",
          description: "Stable; see DESIGN.md for the codes callers may rely on.",
        },
        message: { type: "string" },
        field: { type: "string", description: "The offending field, when there is one." },
      },
    },
  },
} as const;

function toSchema(schema: z.ZodType): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  delete json.$schema;
  return json;
}

function parameters(schema: z.ZodType | undefined, where: "query" | "path") {
  if (!schema) return [];
  const json = toSchema(schema) as {
    properties?: Record<string, Record<string, unknown>>;
    required?: string[];
  };
  return Object.entries(json.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === "path" || (json.required ?? []).includes(name),
    ...(property.description ? { description: property.description } : {}),
    schema: { ...property, description: undefined },
  }));
}

export function openApiDocument(
  specs: readonly RouteSpec[],
  info: { version: string; publicUrl: string },
) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const spec of specs) {
    const path = spec.url.replace(/:([A-Za-z]+)/g, "{$1}");
    paths[path] ??= {};
    const responses: Record<string, unknown> = {};
    for (const [status, description] of Object.entries(spec.responses)) {
      responses[status] =
        Number(status) >= 400
          ? {
              description,
              content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
            }
          : { description, content: { "application/json": {} } };
    }
    if (spec.auth !== "none") {
      responses["401"] = {
        description: "unauthenticated: no token, or an unknown or revoked one",
        content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
      };
    }
    responses["400"] ??= {
      description: "invalid_request, naming the field",
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    };
    paths[path][spec.method.toLowerCase()] = {
      summary: spec.summary,
      tags: [spec.tag],
      ...(spec.auth === "none" ? { security: [] } : {}),
      parameters: [...parameters(spec.params, "path"), ...parameters(spec.query, "query")],
      ...(spec.body
        ? {
            requestBody: {
              required: true,
              content: { "application/json": { schema: toSchema(spec.body) } },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Airlock",
      version: info.version,
      description:
        "Agents submit actions; policy allows, denies or holds them for review; approved actions run once.",
    },
    servers: [{ url: info.publicUrl }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "An agent token or a personal token (alk_…)",
        },
      },
      schemas: { Error: errorSchema },
    },
    paths,
  };
}
