import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
} from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { run } from "../../drivers/host-tools.js";
import { agentEntryPoint } from "./local.js";

/** A self-contained agent: its dist, package.json and the node_modules it needs at run time. */
export interface AgentBundle {
  version: string;
  /** SHA-256 over every file's path and content. It names the install directory on hosts. */
  hash: string;
  /** A gzipped tar of the bundle, with the agent's package.json at its root. */
  tarball: string;
}

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
}

/** Node's lookup: the nearest `node_modules/<name>` from `fromDir` upwards. */
function findPackage(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);

    if (existsSync(join(candidate, "package.json"))) {
      return realpathSync(candidate);
    }

    if (dirname(dir) === dir) {
      return undefined;
    }
  }
}

/**
 * Lays out the run-time dependency tree of the package in `rootDir` the way Node will resolve
 * it from the bundle. A package found inside its parent's own node_modules stays nested there.
 * A hoisted one goes to the top, unless another version already took that place.
 * Returns bundle-relative target paths mapped to the source directories.
 */
export function dependencyLayout(rootDir: string): Map<string, string> {
  const layout = new Map<string, string>();
  const top = new Map<string, string>();
  const visit = (dir: string, placedAt: string) => {
    const pkg = readPackage(dir);
    const names = [
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.optionalDependencies ?? {}),
    ];

    for (const name of names) {
      const source = findPackage(name, dir);

      if (!source) {
        if (pkg.optionalDependencies?.[name]) {
          continue;
        }

        throw new Error(
          `${pkg.name} needs ${name}, which is not installed; run npm install on the management node`,
        );
      }

      const nested = source.startsWith(`${dir}${sep}node_modules${sep}`);
      const topTaken = top.has(name) && top.get(name) !== source;
      const target =
        nested || topTaken ? join(placedAt, "node_modules", name) : join("node_modules", name);

      if (layout.has(target)) {
        continue;
      }

      layout.set(target, source);

      if (!nested && !topTaken) {
        top.set(name, source);
      }

      visit(source, target);
    }
  };

  visit(rootDir, ".");
  return layout;
}

function hashTree(dir: string) {
  const hash = createHash("sha256");
  const walk = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const full = join(path, entry.name);

      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.isFile()) {
        hash.update(relative(dir, full)).update("\0").update(readFileSync(full)).update("\0");
      }
    }
  };
  walk(dir);
  return hash.digest("hex");
}

let cached: Promise<AgentBundle> | undefined;

/**
 * Builds the agent bundle once per process in `<workDir>/agent-bundle`. Hosts get this file
 * over SFTP, so adding a host never downloads anything on the host.
 */
export function agentBundle(workDir: string): Promise<AgentBundle> {
  cached ??= buildBundle(workDir).catch((error) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

async function buildBundle(workDir: string): Promise<AgentBundle> {
  const agentDir = realpathSync(dirname(dirname(agentEntryPoint())));
  const pkg = readPackage(agentDir);

  if (!existsSync(join(agentDir, "dist", "main.js"))) {
    throw new Error(
      `the agent is not built (${agentDir}/dist/main.js is missing); run npm run build`,
    );
  }

  const base = join(workDir, "agent-bundle");
  const stage = join(base, `stage-${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  cpSync(join(agentDir, "package.json"), join(stage, "package.json"));
  cpSync(join(agentDir, "dist"), join(stage, "dist"), { recursive: true });

  for (const [target, source] of dependencyLayout(agentDir)) {
    // Each package's own node_modules is laid out by the walk, not copied wholesale.
    cpSync(source, join(stage, target), {
      recursive: true,
      filter: (path) => !relative(source, path).split(sep).includes("node_modules"),
    });
  }

  const hash = hashTree(stage);
  const tarball = join(base, `tstack-agent-${pkg.version}-${hash.slice(0, 12)}.tar.gz`);

  if (!existsSync(tarball)) {
    await run("tar", ["-czf", `${tarball}.part`, "-C", stage, "."], 120_000);
    renameSync(`${tarball}.part`, tarball);
  }

  rmSync(stage, { recursive: true, force: true });
  return { version: pkg.version, hash, tarball };
}
