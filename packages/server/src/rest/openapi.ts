import type { ApiRoute } from "@tstack/api";

/** Builds the OpenAPI 3 document from the same route declarations that drive validation. */
export function openApiDocument(routes: ApiRoute[], version: string) {
  const paths: Record<string, Record<string, unknown>> = {};

  for (const route of routes) {
    const path = `/zstack/v1${route.path}`;
    const method = route.method.toLowerCase();
    paths[path] ??= {};
    const entry = paths[path];
    const existing = entry[method] as
      | {
          requestBody?: { content: { "application/json": { schema: { oneOf: unknown[] } } } };
          summary: string;
        }
      | undefined;
    const body = requestBody(route);

    if (existing && body && existing.requestBody) {
      existing.requestBody.content["application/json"].schema.oneOf.push(body);
      existing.summary = `${existing.summary}; ${route.summary}`;
      continue;
    }

    entry[method] = operation(route, path, body);

    if (route.kind === "query" && route.resource !== "ApiJob") {
      paths[`${path}/{uuid}`] = {
        ...paths[`${path}/{uuid}`],
        get: {
          ...operation(route, `${path}/{uuid}`, undefined),
          operationId: `${route.name}ByUuid`,
        },
      };
    }
  }

  paths["/zstack/v1/api-jobs/{uuid}"] = {
    get: {
      operationId: "pollApiJob",
      summary: "Poll an async API job: 202 running, 200 result, 503 error, 404 expired",
      parameters: [
        pathParameter("uuid"),
        {
          name: "waitSeconds",
          in: "query",
          required: false,
          description: "Seconds (0 to 60) to hold a 202 until the job ends",
          schema: { type: "integer", minimum: 0, maximum: 60 },
        },
      ],
      responses: {
        200: { description: "The job succeeded" },
        202: { description: "Still running" },
        404: { description: "Unknown or expired" },
        503: { description: "The job failed", content: errorContent },
      },
    },
  };

  return {
    openapi: "3.0.3",
    info: { title: "tstack REST API (ZStack v1 contract)", version },
    components: {
      securitySchemes: {
        session: {
          type: "apiKey",
          in: "header",
          name: "Authorization",
          description: "OAuth <session uuid>",
        },
      },
    },
    security: [{ session: [] }],
    paths,
  };
}

const errorContent = {
  "application/json": {
    schema: {
      type: "object",
      properties: {
        error: {
          type: "object",
          properties: {
            code: { type: "string" },
            description: { type: "string" },
            details: { type: "string" },
            elaboration: { type: "string" },
          },
        },
      },
    },
  },
};

function requestBody(route: ApiRoute) {
  if (!route.params || route.method === "GET" || route.method === "DELETE") {
    return undefined;
  }

  const key = route.kind === "create" ? "params" : route.name;
  const tags = { type: "array", items: { type: "string" } };
  return {
    type: "object",
    required: [key],
    properties: { [key]: route.params, systemTags: tags, userTags: tags },
    additionalProperties: false,
  };
}

function operation(route: ApiRoute, path: string, body: unknown) {
  const parameters: unknown[] = [...path.matchAll(/\{([^}]+)\}/g)].map((match) =>
    pathParameter(match[1]!),
  );

  if (route.kind === "query") {
    parameters.push(
      {
        name: "q",
        in: "query",
        schema: { type: "array", items: { type: "string" } },
        style: "form",
        explode: true,
        description: "condition <field><op><value>",
      },
      ...["limit", "start"].map((name) => ({ name, in: "query", schema: { type: "integer" } })),
      ...["count", "replyWithCount"].map((name) => ({
        name,
        in: "query",
        schema: { type: "boolean" },
      })),
      { name: "sort", in: "query", schema: { type: "string" }, description: "+field or -field" },
      {
        name: "fields",
        in: "query",
        schema: { type: "string" },
        description: "comma-separated field names",
      },
    );
  }

  if (route.kind === "delete") {
    parameters.push({
      name: "deleteMode",
      in: "query",
      schema: { type: "string", enum: ["Permissive", "Enforcing"] },
    });
  }

  const async = route.kind === "create" || route.kind === "action" || route.kind === "delete";
  const responses: Record<string, unknown> = async
    ? {
        202: {
          description: "Accepted; poll the location",
          content: {
            "application/json": {
              schema: {
                type: "object",
                properties: { location: { type: "string" }, apiTimeout: { type: "integer" } },
              },
            },
          },
        },
      }
    : {
        200: {
          description: "Success",
          content: route.inventory
            ? { "application/json": { schema: replySchema(route) } }
            : undefined,
        },
      };
  responses[400] = { description: "Invalid argument", content: errorContent };

  return {
    operationId: route.name,
    summary: route.summary,
    ...(route.public ? { security: [] } : {}),
    parameters,
    ...(body
      ? {
          requestBody: {
            required: true,
            content: { "application/json": { schema: { oneOf: [body] } } },
          },
        }
      : {}),
    responses,
  };
}

function replySchema(route: ApiRoute) {
  return route.kind === "query"
    ? {
        type: "object",
        properties: {
          inventories: { type: "array", items: route.inventory },
          total: { type: "integer" },
        },
      }
    : { type: "object", properties: { inventory: route.inventory } };
}

function pathParameter(name: string) {
  return { name, in: "path", required: true, schema: { type: "string" } };
}
