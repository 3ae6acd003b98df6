import { lookup } from "node:dns/promises";
import { realpath, stat } from "node:fs/promises";
import { BlockList, isIP } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { StorageError } from "./errors.js";

/** Rules for the URLs an image download may read. */
export interface UrlPolicy {
  /** Directories whose files `file://` URLs may name; file URLs are rejected when empty. */
  allowedFilePrefixes?: readonly string[];
  /** Accept hosts that resolve to loopback (127.0.0.0/8, ::1) or unspecified addresses. */
  allowLoopback?: boolean;
  /** Accept hosts that resolve to link-local addresses (169.254.0.0/16, fe80::/10). */
  allowLinkLocal?: boolean;
}

/** An http(s) URL whose host resolved only to allowed addresses. */
export interface CheckedHttpUrl {
  kind: "http";
  url: URL;
  /** Addresses to connect to, so a second DNS answer cannot swap in a blocked one. */
  addresses: { address: string; family: 4 | 6 }[];
}

/** A file URL that names a regular file under an allowed directory. */
export interface CheckedFileUrl {
  kind: "file";
  url: URL;
  /** Canonical path after resolving symlinks. */
  path: string;
  size: number;
}

// Unspecified addresses count as loopback because Linux connects 0.0.0.0 and :: to this host.
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addSubnet("0.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
LOOPBACK.addAddress("::", "ipv6");

const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet("169.254.0.0", 16, "ipv4");
LINK_LOCAL.addSubnet("fe80::", 10, "ipv6");

/**
 * Checks a download URL against the policy: http and https hosts are resolved and every address
 * is checked, and file URLs must name a regular file under an allowed directory after symlinks
 * are resolved. Any other scheme is rejected.
 */
export async function checkUrl(
  text: string,
  policy: UrlPolicy,
): Promise<CheckedHttpUrl | CheckedFileUrl> {
  const url = parseUrl(text);

  if (url.protocol === "http:" || url.protocol === "https:") {
    return { kind: "http", url, addresses: await resolveAllowed(url, policy) };
  }

  if (url.protocol === "file:") {
    return checkFileUrl(url, policy.allowedFilePrefixes ?? []);
  }

  throw new StorageError(
    "URL_NOT_ALLOWED",
    `unsupported URL scheme ${url.protocol} in ${redactUrl(url)}; use http, https or file`,
  );
}

/** Returns the URL without query, fragment and credentials, which may carry secrets. */
export function redactUrl(url: URL) {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function parseUrl(text: string) {
  try {
    return new URL(text);
  } catch {
    throw new StorageError("INVALID_ARGUMENT", `invalid image URL ${text.slice(0, 200)}`);
  }
}

async function resolveAllowed(url: URL, policy: UrlPolicy) {
  // URL keeps the brackets of an IPv6 literal in hostname.
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const family = isIP(host);
  let addresses: { address: string; family: number }[];

  if (family) {
    addresses = [{ address: host, family }];
  } else {
    addresses = await lookup(host, { all: true, verbatim: true }).catch((error: unknown) => {
      throw new StorageError(
        "DOWNLOAD_FAILED",
        `failed to resolve host ${host} of ${redactUrl(url)}: ${(error as Error).message}`,
      );
    });
  }

  for (const { address, family: addressFamily } of addresses) {
    assertAddressAllowed(url, address, addressFamily === 6 ? "ipv6" : "ipv4", policy);
  }

  return addresses.map(({ address, family: f }) => ({ address, family: f === 6 ? 6 : 4 }) as const);
}

function assertAddressAllowed(url: URL, address: string, type: "ipv4" | "ipv6", policy: UrlPolicy) {
  if (!policy.allowLoopback && LOOPBACK.check(address, type)) {
    throw new StorageError(
      "URL_NOT_ALLOWED",
      `image URL ${redactUrl(url)} resolves to loopback address ${address}, which is not allowed`,
    );
  }

  if (!policy.allowLinkLocal && LINK_LOCAL.check(address, type)) {
    throw new StorageError(
      "URL_NOT_ALLOWED",
      `image URL ${redactUrl(url)} resolves to link-local address ${address}, which is not allowed`,
    );
  }
}

async function checkFileUrl(url: URL, prefixes: readonly string[]): Promise<CheckedFileUrl> {
  const requested = fileURLToPath(url);
  const canonical = await realpath(requested).catch(() => {
    throw new StorageError("NOT_FOUND", `image file ${requested} not found`);
  });

  if (!(await isUnderAny(canonical, prefixes))) {
    throw new StorageError(
      "URL_NOT_ALLOWED",
      `image file ${requested} is not under an allowed directory (${prefixes.join(", ") || "none"})`,
    );
  }

  const info = await stat(canonical);

  if (!info.isFile()) {
    throw new StorageError("INVALID_ARGUMENT", `image path ${requested} is not a regular file`);
  }

  return { kind: "file", url, path: canonical, size: info.size };
}

async function isUnderAny(canonical: string, prefixes: readonly string[]) {
  for (const prefix of prefixes) {
    const root = await realpath(prefix).catch(() => undefined);

    if (
      root !== undefined &&
      canonical.startsWith(root.endsWith(path.sep) ? root : root + path.sep)
    ) {
      return true;
    }
  }

  return false;
}
