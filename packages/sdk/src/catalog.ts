import { type ApiRoute, apiRoutes } from "@tstack/api";

/** One resource of the contract with the APIs that act on it, keyed by a CLI-style verb. */
export interface ResourceEntry {
  /** The resource type, such as `Zone` or `InstanceOffering`. */
  name: string;
  /** Kebab-case command name, such as `instance-offering`. */
  command: string;
  /** Other accepted command names, such as `vm` for `vm-instance`. */
  aliases: string[];
  /** The query route, used to list, get and resolve names; absent for action-only groups. */
  query?: ApiRoute;
  /** APIs by verb: `create`, `update`, `delete`, `change-state`, `cancel`... */
  operations: Map<string, ApiRoute>;
}

/** APIs that have their own commands (login and logout) instead of a resource verb. */
const SESSION_APIS = new Set(["logInByAccount", "logInByUser", "logOut"]);

/**
 * Groups the declared APIs by resource, so a newly declared resource gets list, get, create,
 * update, delete and action verbs without code changes. A route belongs to its `resource`, else
 * to the longest known resource its name contains, else to the resource whose collection path
 * it extends (`/management-nodes/actions`), else to the words after its verb (`deleteTag`).
 */
export function buildCatalog(routes: ApiRoute[] = apiRoutes): Map<string, ResourceEntry> {
  const collections = collectionPaths(routes);
  const known = [...collections.keys()].sort((a, b) => b.length - a.length);
  const catalog = new Map<string, ResourceEntry>();

  for (const route of routes) {
    if (SESSION_APIS.has(route.name)) {
      continue;
    }

    const resource = ownerOf(route, known, collections);
    const entry = catalog.get(resource) ?? newEntry(resource);
    catalog.set(resource, entry);

    if (route.kind === "query" && !entry.query) {
      entry.query = route;
      continue;
    }

    entry.operations.set(uniqueVerb(entry, verbOf(route, resource)), route);
  }

  return catalog;
}

/** Finds a resource by command name or alias, case-insensitively. */
export function findResource(catalog: Map<string, ResourceEntry>, command: string) {
  const wanted = command.toLowerCase();

  for (const entry of catalog.values()) {
    if (entry.command === wanted || entry.aliases.includes(wanted)) {
      return entry;
    }
  }

  return undefined;
}

/** Converts `InstanceOffering` or `l3NetworkUuid` to `instance-offering` or `l3-network-uuid`. */
export function kebab(name: string) {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1-$2")
    .toLowerCase();
}

function collectionPaths(routes: ApiRoute[]) {
  const paths = new Map<string, string>();

  for (const route of routes) {
    if (route.kind === "query" && route.resource && !paths.has(route.resource)) {
      paths.set(route.resource, route.path);
    }
  }

  return paths;
}

function ownerOf(route: ApiRoute, known: string[], collections: Map<string, string>) {
  if (route.resource) {
    return route.resource;
  }

  const byName = known.find((resource) => route.name.includes(resource));

  if (byName) {
    return byName;
  }

  const byPath = known.find((resource) => isBelow(route.path, collections.get(resource)!));
  return byPath ?? wordsAfterVerb(route.name);
}

/**
 * Returns whether `path` acts on `collection`: it continues with a path variable (`/{uuid}/...`), or
 * with `/actions` after path variables only. `/accounts/login` is not below `/accounts`.
 */
function isBelow(path: string, collection: string) {
  if (!path.startsWith(`${collection}/`)) {
    return false;
  }

  const rest = path.slice(collection.length + 1).split("/");
  const isVariable = (segment: string) => /^\{[^}]+\}$/.test(segment);
  return (
    isVariable(rest[0]!) || rest.every((segment) => segment === "actions" || isVariable(segment))
  );
}

function wordsAfterVerb(name: string) {
  const rest = name.replace(/^[a-z]+/, "");
  return rest || name;
}

function verbOf(route: ApiRoute, resource: string) {
  for (const verb of ["create", "update", "delete"]) {
    if (route.name === `${verb}${resource}`) {
      return verb;
    }
  }

  const withoutResource = route.name.replace(resource, "");
  return kebab(withoutResource === route.name ? route.name : withoutResource);
}

function uniqueVerb(entry: ResourceEntry, verb: string) {
  const reserved = new Set(["list", "get", ...entry.operations.keys()]);
  let candidate = verb;
  let index = 2;

  while (reserved.has(candidate)) {
    candidate = `${verb}-${index}`;
    index += 1;
  }

  return candidate;
}

function newEntry(name: string): ResourceEntry {
  const command = kebab(name);
  const aliases = command.endsWith("-instance") ? [command.slice(0, -"-instance".length)] : [];
  return { name, command, aliases, operations: new Map() };
}
