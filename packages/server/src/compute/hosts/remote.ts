import { ApiError } from "@tstack/api";
import { sh } from "./shell.js";
import type { SshSession } from "./ssh.js";

/** Preflight findings of a host. A CPU without virtualization only means QEMU uses TCG. */
export interface RemoteFacts {
  architecture: string;
  os: string;
  memoryBytes: number;
  virtualization: "kvm" | "tcg";
}

/** Tools the agent runs, with the Debian package that provides each. */
export const HOST_PACKAGES: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  dnsmasq: "dnsmasq-base",
  nft: "nftables",
  ip: "iproute2",
  busybox: "busybox-static",
  node: "nodejs",
};

/** The oldest Node.js major the agent's dependencies (fastify 5, commander 14) support. */
export const MIN_NODE_MAJOR = 20;

const SBIN_PATH = "PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin";

/** Runs `script` as root: directly when logged in as root, otherwise through `sudo -n`. */
export function asRoot(session: SshSession, script: string) {
  return session.login.username === "root" ? script : sh`sudo -n sh -c ${script}`;
}

/** Parses the preflight output: `uname -m`, /etc/os-release, MemTotal, vmx/svm count. */
export function parsePreflight(output: string): RemoteFacts {
  const [machine = "", osRelease = "", meminfo = "", flags = ""] = output.split("\n---\n");
  const field = (name: string) =>
    new RegExp(`^${name}="?([^"\\n]*)"?$`, "m").exec(osRelease)?.[1] ?? "";
  const memoryKb = Number(/MemTotal:\s+(\d+)\s*kB/.exec(meminfo)?.[1] ?? 0);

  return {
    architecture: machine.trim(),
    os: [field("ID"), field("ID_LIKE")].filter(Boolean).join(" "),
    memoryBytes: memoryKb * 1024,
    virtualization: Number(flags.trim()) > 0 ? "kvm" : "tcg",
  };
}

/** Checks architecture, OS and memory over SSH, and throws what was found and what is needed. */
export async function remotePreflight(session: SshSession): Promise<RemoteFacts> {
  const output = await session.check(
    "the preflight",
    "uname -m; echo ---; cat /etc/os-release; echo ---; grep MemTotal /proc/meminfo; echo ---; grep -c -w -E 'vmx|svm' /proc/cpuinfo || true",
  );
  const facts = parsePreflight(output);
  const host = session.login.host;

  if (facts.architecture !== "x86_64") {
    throw new ApiError(
      "operationFailed",
      `host ${host} is ${facts.architecture || "of unknown architecture"}; tstack runs VMs on x86_64 hosts only`,
    );
  }

  if (!/\b(debian|ubuntu)\b/.test(facts.os)) {
    throw new ApiError(
      "operationFailed",
      `host ${host} runs '${facts.os || "an unknown OS"}' according to /etc/os-release; tstack installs its packages with apt on Debian or Ubuntu only`,
    );
  }

  if (facts.memoryBytes < 1024 ** 3) {
    throw new ApiError(
      "operationFailed",
      `host ${host} has ${facts.memoryBytes} bytes of memory; at least 1 GiB is needed`,
    );
  }

  return facts;
}

/** Lists the tools of HOST_PACKAGES that are missing on the host. */
export async function missingTools(session: SshSession) {
  const tools = Object.keys(HOST_PACKAGES).join(" ");
  // The tool names come from HOST_PACKAGES above, never from a request.
  const output = await session.check(
    "looking for the host's tools",
    `${SBIN_PATH}; for tool in ${tools}; do command -v "$tool" >/dev/null 2>&1 || echo "$tool"; done`,
  );
  return output.split("\n").filter((tool) => tool in HOST_PACKAGES);
}

/** Installs the packages of the missing tools with apt, from the host's own mirrors. */
export async function installRemotePackages(session: SshSession, tools: string[]) {
  const packages = tools.map((tool) => HOST_PACKAGES[tool]!);
  await session.check(
    `installing ${packages.join(", ")} with apt`,
    asRoot(
      session,
      `export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends ${packages.join(" ")}`,
    ),
    { timeoutMs: 900_000 },
  );
}

/** Major version of the host's `node`, or 0 when there is none. */
export async function remoteNodeMajor(session: SshSession) {
  const result = await session.exec("node --version");
  return result.code === 0 ? Number(/^v(\d+)\./.exec(result.stdout.trim())?.[1] ?? 0) : 0;
}
