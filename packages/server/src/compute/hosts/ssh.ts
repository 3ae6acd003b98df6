import { createHash } from "node:crypto";
import { ApiError } from "@tstack/api";
import { Client, type SFTPWrapper } from "ssh2";

/** Address, user and credential of an SSH login; normally one of password and privateKey is set. */
export interface SshLogin {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKey?: string;
  /** Fingerprint recorded at the first connect. Logins reject a host that presents another key. */
  knownFingerprint?: string;
  timeoutMs?: number;
}

/** Output of one remote command. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** SHA-256 fingerprint of a public key blob, written the way `ssh-keygen -l` writes it. */
export function fingerprintOf(key: Buffer) {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

/** One SSH connection to a host: commands, file uploads and the host key it presented. */
export class SshSession {
  private sftpChannel?: Promise<SFTPWrapper>;

  private constructor(
    private readonly client: Client,
    readonly login: SshLogin,
    /** Fingerprint of the key the host presented on this connection. */
    readonly fingerprint: string,
  ) {}

  /** Connects and authenticates. Errors name the host and the user, and what to check. */
  static open(login: SshLogin): Promise<SshSession> {
    const where = `${login.username}@${login.host}:${login.port}`;
    const client = new Client();
    let presented = "";

    return new Promise((resolve, reject) => {
      const fail = (error: ApiError) => {
        client.end();
        reject(error);
      };

      client.once("ready", () => resolve(new SshSession(client, login, presented)));
      client.once("error", (error: Error & { level?: string }) =>
        fail(loginError(error, where, login, presented)),
      );

      try {
        client.connect({
          host: login.host,
          port: login.port,
          username: login.username,
          password: login.password,
          privateKey: login.privateKey,
          readyTimeout: login.timeoutMs ?? 20_000,
          hostVerifier: (key: Buffer) => {
            presented = fingerprintOf(key);
            return !login.knownFingerprint || login.knownFingerprint === presented;
          },
        });
      } catch (error) {
        // ssh2 parses the private key synchronously, and its message names what it could not parse.
        fail(
          new ApiError(
            "operationFailed",
            `SSH login as ${where} failed: the sshKey of the host is unusable: ${(error as Error).message}`,
            "give a private key in OpenSSH or PEM format without a passphrase",
          ),
        );
      }
    });
  }

  /** Runs a command line. Build it with `sh` or `shellCommand` from shell.ts, never by hand. */
  exec(command: string, options: { timeoutMs?: number; input?: string } = {}) {
    const timeoutMs = options.timeoutMs ?? 60_000;

    return new Promise<ExecResult>((resolve, reject) => {
      this.client.exec(command, (error, stream) => {
        if (error) {
          reject(this.error(`could not start a command: ${error.message}`));
          return;
        }

        let stdout = "";
        let stderr = "";
        const timer = setTimeout(() => {
          stream.close();
          reject(this.error(`a command did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
        stream.on("data", (chunk: Buffer) => {
          stdout += chunk.toString("utf8");
        });
        stream.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString("utf8");
        });
        stream.once("close", (code: number | null) => {
          clearTimeout(timer);
          resolve({ stdout, stderr, code: code ?? -1 });
        });
        stream.end(options.input ?? "");
      });
    });
  }

  /** Runs a command and throws its stderr when it exits non-zero. `what` names the step. */
  async check(what: string, command: string, options: { timeoutMs?: number; input?: string } = {}) {
    const result = await this.exec(command, options);

    if (result.code !== 0) {
      const detail = (result.stderr || result.stdout).trim().slice(-2000);
      throw this.error(`${what} failed with exit code ${result.code}: ${detail}`);
    }

    return result.stdout;
  }

  /** Copies a local file to a remote path over SFTP. */
  async upload(localPath: string, remotePath: string) {
    const sftp = await this.sftp();
    await new Promise<void>((resolve, reject) =>
      sftp.fastPut(localPath, remotePath, (error) =>
        error ? reject(this.error(`uploading ${remotePath} failed: ${error.message}`)) : resolve(),
      ),
    );
  }

  close() {
    this.client.end();
  }

  private sftp() {
    this.sftpChannel ??= new Promise((resolve, reject) =>
      this.client.sftp((error, sftp) =>
        error ? reject(this.error(`could not open SFTP: ${error.message}`)) : resolve(sftp),
      ),
    );
    return this.sftpChannel;
  }

  private error(text: string) {
    return new ApiError(
      "operationFailed",
      `on host ${this.login.host} (SSH as ${this.login.username}): ${text}`,
    );
  }
}

/** Turns an ssh2 connect error into one that names the host, the user and what to do. */
function loginError(
  error: Error & { level?: string },
  where: string,
  login: SshLogin,
  presented: string,
) {
  if (login.knownFingerprint && presented && presented !== login.knownFingerprint) {
    return new ApiError(
      "operationFailed",
      `SSH host key of ${login.host} changed: it presented ${presented}, but ${login.knownFingerprint} was recorded when the host was added`,
      "if the host was reinstalled or its key was replaced on purpose, delete the host and add it again to trust the new key; otherwise treat this as a possible attack",
    );
  }

  if (error.level === "client-authentication") {
    const method = login.privateKey ? "private key" : "password";
    return new ApiError(
      "operationFailed",
      `SSH login as ${where} failed: the host rejected the ${method}`,
      login.privateKey
        ? `add the key's public half to ~${login.username}/.ssh/authorized_keys on the host, then call reconnectHost`
        : "check the password, then call reconnectHost",
    );
  }

  return new ApiError(
    "operationFailed",
    `SSH connection to ${where} failed: ${error.message}`,
    "check that sshd runs on the host and that the address and sshPort are right",
  );
}
