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
        retryAfter: {
          type: "integer",
          minimum: 1,
          description: "With rate_limited, when waiting lifts the limit: seconds, as Retry-After.",
        },
      },
    },
  },
} as const;

const retryAfterHeader = {
  "Retry-After": {
    description: "Seconds to wait, when waiting lifts the limit (also as the error's retryAfter)",
    schema: { type: "integer" },
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
    const refusal = (description: string) => ({
      description,
      content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
    });
    for (const [status, description] of Object.entries(spec.responses)) {
      responses[status] =
        Number(status) >= 400
          ? { ...refusal(description), ...(status === "429" ? { headers: retryAfterHeader } : {}) }
          : { description, content: { "application/json": {} } };
    }
    // What the router, the body parser and authentication answer on any route of the kind.
    if (spec.auth !== "none") {
      responses["401"] = refusal("unauthenticated: no token, or an unknown or revoked one");
      const forbidden = `forbidden: ${spec.auth === "agent" ? "a personal token on an agent endpoint" : "an agent token on a reviewer endpoint"}`;
      const own = spec.responses[403];
      responses["403"] = refusal(own ? `${own}; or ${forbidden}` : forbidden);
      responses["503"] ??= refusal("store_unavailable: the store cannot be read or written");
    }
    if (spec.body) {
      responses["413"] ??= refusal("payload_too_large: the body is over server.maxBodyBytes");
      responses["415"] ??= refusal("invalid_request: the body is not sent as application/json");
    }
    responses["400"] ??= refusal("invalid_request, naming the field");
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
