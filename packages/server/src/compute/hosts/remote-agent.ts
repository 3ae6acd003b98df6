import { basename, dirname, join } from "node:path";
import { ApiError } from "@tstack/api";
import type { AgentBundle } from "./bundle.js";
import { asRoot, MIN_NODE_MAJOR, remoteNodeMajor } from "./remote.js";
import { sh } from "./shell.js";
import type { SshSession } from "./ssh.js";

const UNIT_NAME = "tstack-agent.service";
const UNIT_PATH = `/etc/systemd/system/${UNIT_NAME}`;

/** Agent deployment settings for one host. */
export interface RemoteAgentPlan {
  dataDir: string;
  /** `address:port` the agent's command server binds. */
  listen: string;
  secret: string;
  bundle: AgentBundle;
}

/** Outcome of a deployment, so a failed connect undoes only its own work. */
export interface DeployOutcome {
  installDir: string;
  /** Whether this run (re)started the agent. */
  started: boolean;
  supervisor: "systemd" | "process";
}

/**
 * Checks the data directory for use on a remote host. It ends up in unit files and command
 * lines there, so it is kept to plain path characters that no quoting rule can reinterpret.
 */
export function checkRemoteDataDir(dataDir: string) {
  if (!/^\/[A-Za-z0-9._/-]+$/.test(dataDir) || dataDir.split("/").includes("..")) {
    throw new ApiError(
      "operationFailed",
      `global config host/agent.dataDir '${dataDir}' cannot be used on remote hosts: it must be an absolute path of letters, digits, '.', '_', '-' and '/' without '..'`,
      "set host/agent.dataDir to such a path with updateGlobalConfig, then call reconnectHost",
    );
  }
}

/** The install directory of a bundle: next to the data directory, named by version and hash. */
export function installDirOf(dataDir: string, bundle: AgentBundle) {
  return join(dirname(dataDir), `tstack-agent-${bundle.version}-${bundle.hash.slice(0, 12)}`);
}

/** Copies the bundle unless the host already has this exact one, and returns the install dir. */
async function installBundle(session: SshSession, plan: RemoteAgentPlan) {
  const installDir = installDirOf(plan.dataDir, plan.bundle);
  const marker = join(installDir, ".bundle-hash");
  const present = await session.exec(sh`cat ${marker}`);

  if (present.code === 0 && present.stdout.trim() === plan.bundle.hash) {
    return installDir;
  }

  const upload = `/tmp/${basename(plan.bundle.tarball)}`;
  await session.upload(plan.bundle.tarball, upload);
  const staging = `${installDir}.part`;
  await session.check(
    "unpacking the agent",
    asRoot(
      session,
      sh`rm -rf ${staging} && mkdir -p ${staging} && tar -xzf ${upload} -C ${staging} && printf '%s\n' ${plan.bundle.hash} > ${staging}/.bundle-hash && rm -rf ${installDir} && mv ${staging} ${installDir}; status=$?; rm -f ${upload}; exit $status`,
    ),
    { timeoutMs: 300_000 },
  );
  return installDir;
}

/**
 * Finds a Node.js the agent runs on. Debian 12 ships Node 18, which is too old for fastify 5. When
 * the host's `node` is older than MIN_NODE_MAJOR, the management node copies its own binary over.
 * Both are x86_64 Linux builds against glibc, and the preflight checked the host's architecture.
 */
async function nodeBinary(session: SshSession, dataDir: string) {
  if ((await remoteNodeMajor(session)) >= MIN_NODE_MAJOR) {
    return (await session.check("locating node", "command -v node")).trim();
  }

  const target = join(dirname(dataDir), `tstack-node-${process.version}`, "node");
  const present = await session.exec(sh`test -x ${target}`);

  if (present.code !== 0) {
    const upload = `/tmp/tstack-node-${process.version}`;
    await session.upload(process.execPath, upload);
    await session.check(
      "installing node",
      asRoot(
        session,
        sh`mkdir -p ${dirname(target)} && mv ${upload} ${target}.part && chmod 755 ${target}.part && mv ${target}.part ${target}`,
      ),
    );
  }

  return target;
}

/** Writes the host secret (0600) through stdin, so it never appears in a command line. */
async function writeSecret(session: SshSession, dataDir: string, secret: string) {
  const file = join(dataDir, "host-secret");
  const output = await session.check(
    "writing the host secret",
    asRoot(
      session,
      sh`umask 077 && mkdir -p ${dataDir} && cat > ${file}.new && chmod 600 ${file}.new && if cmp -s ${file}.new ${file}; then rm -f ${file}.new; echo same; else mv ${file}.new ${file}; echo changed; fi`,
    ),
    { input: `${secret}\n` },
  );
  return output.trim() === "changed";
}

/** Shell text that prints the pid of the agent running from `dataDir`, or nothing. */
function agentPidScript(dataDir: string, mustContain: string) {
  return sh`pid=$(cat ${join(dataDir, "agent.pid")} 2>/dev/null); if [ -n "$pid" ] && [ -r /proc/$pid/cmdline ]; then cmd=$(tr '\\0' ' ' < /proc/$pid/cmdline); case "$cmd" in *${mustContain}*${`--data-dir ${dataDir} `}*) echo "$pid";; esac; fi`;
}

async function usesSystemd(session: SshSession) {
  const comm = await session.exec("cat /proc/1/comm");
  return comm.stdout.trim() === "systemd";
}

function unitText(node: string, installDir: string, plan: RemoteAgentPlan) {
  return [
    "[Unit]",
    "Description=tstack host agent",
    "After=network-online.target",
    "",
    "[Service]",
    `ExecStart=${node} ${installDir}/dist/main.js --listen ${plan.listen} --data-dir ${plan.dataDir}`,
    "Restart=always",
    "RestartSec=2",
    // VMs outlive the agent: only the agent process itself is stopped.
    "KillMode=process",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

async function startWithSystemd(
  session: SshSession,
  node: string,
  installDir: string,
  plan: RemoteAgentPlan,
  secretChanged: boolean,
) {
  const unit = unitText(node, installDir, plan);
  const output = await session.check(
    "installing the systemd unit",
    asRoot(
      session,
      sh`cat > ${UNIT_PATH}.new && if cmp -s ${UNIT_PATH}.new ${UNIT_PATH}; then rm -f ${UNIT_PATH}.new; echo same; else mv ${UNIT_PATH}.new ${UNIT_PATH}; echo changed; fi`,
    ),
    { input: unit },
  );
  const restart = secretChanged || output.trim() === "changed";
  const active = await session.exec(sh`systemctl is-active --quiet ${UNIT_NAME}`);
  await session.check(
    "starting the agent with systemd",
    asRoot(
      session,
      sh`systemctl daemon-reload && systemctl enable --quiet ${UNIT_NAME} && systemctl ${restart ? "restart" : "start"} ${UNIT_NAME}`,
    ),
  );
  return restart || active.code !== 0;
}

async function startAsProcess(
  session: SshSession,
  node: string,
  installDir: string,
  plan: RemoteAgentPlan,
  secretChanged: boolean,
) {
  const main = `${installDir}/dist/main.js`;
  const current = await session.check("looking for the agent", agentPidScript(plan.dataDir, main));

  if (current.trim() && !secretChanged) {
    return false;
  }

  await stopProcess(session, plan.dataDir);
  const log = join(plan.dataDir, "agent.log");
  const pidFile = join(plan.dataDir, "agent.pid");
  // setsid puts the agent in a session of its own, so the SSH channel closing does not end it.
  await session.check(
    "starting the agent",
    asRoot(
      session,
      sh`setsid nohup ${node} ${main} --listen ${plan.listen} --data-dir ${plan.dataDir} >> ${log} 2>&1 < /dev/null & echo $! > ${pidFile}`,
    ),
  );
  return true;
}

async function stopProcess(session: SshSession, dataDir: string) {
  const find = agentPidScript(dataDir, "/dist/main.js");
  await session.check(
    "stopping the agent",
    asRoot(
      session,
      `pid=$(${find}); if [ -n "$pid" ]; then kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; fi`,
    ),
  );
}

/**
 * Installs the bundle, writes the secret and makes sure the agent runs. An agent already running
 * the same bundle with the same secret is left alone, and a new bundle or secret restarts it.
 */
export async function deployRemoteAgent(
  session: SshSession,
  plan: RemoteAgentPlan,
): Promise<DeployOutcome> {
  checkRemoteDataDir(plan.dataDir);
  const installDir = await installBundle(session, plan);
  const node = await nodeBinary(session, plan.dataDir);
  const secretChanged = await writeSecret(session, plan.dataDir, plan.secret);

  const supervisor = (await usesSystemd(session)) ? "systemd" : "process";
  const started =
    supervisor === "systemd"
      ? await startWithSystemd(session, node, installDir, plan, secretChanged)
      : await startAsProcess(session, node, installDir, plan, secretChanged);
  await pruneOldBundles(session, installDir);
  return { installDir, started, supervisor };
}

/** Removes the bundles of earlier versions; the running agent uses only `installDir`. */
async function pruneOldBundles(session: SshSession, installDir: string) {
  await session.check(
    "removing old agent bundles",
    asRoot(
      session,
      `for old in ${sh`${dirname(installDir)}`}/tstack-agent-*; do [ -d "$old" ] && [ "$old" != ${sh`${installDir}`} ] && rm -rf "$old"; done; true`,
    ),
  );
}

/** Stops the agent of `dataDir` on a host, under systemd or as a plain process. VMs keep running. */
export async function stopRemoteAgent(session: SshSession, dataDir: string) {
  checkRemoteDataDir(dataDir);

  if (await usesSystemd(session)) {
    await session.check(
      "stopping the agent with systemd",
      asRoot(
        session,
        sh`if [ -f ${UNIT_PATH} ]; then systemctl disable --now --quiet ${UNIT_NAME}; rm -f ${UNIT_PATH}; systemctl daemon-reload; fi`,
      ),
    );
  }

  await stopProcess(session, dataDir);
}
