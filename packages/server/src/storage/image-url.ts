import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { posix } from "node:path";
import { ApiError } from "@tstack/api";
import type { Core } from "../core/core.js";

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addSubnet("0.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
LOOPBACK.addAddress("::", "ipv6");

const LINK_LOCAL = new BlockList();
LINK_LOCAL.addSubnet("169.254.0.0", 16, "ipv4");
LINK_LOCAL.addSubnet("fe80::", 10, "ipv6");

/** Prefixes of `image.allowedFileUrlPrefixes`, each a normalized absolute directory. */
function allowedPrefixes(core: Core) {
  return core.config
    .get("image", "allowedFileUrlPrefixes")
    .split(",")
    .map((prefix) => prefix.trim())
    .filter((prefix) => prefix !== "")
    .map((prefix) => posix.normalize(prefix).replace(/\/+$/, ""));
}

/**
 * Checks an image URL against the global configs before any work starts. The agent applies its
 * own policy again when it downloads, after resolving names and symlinks, so this check is the
 * early, readable rejection and not the only one.
 */
export async function checkImageUrl(core: Core, field: string, value: string) {
  let url: URL;

  try {
    url = new URL(value);
  } catch {
    throw new ApiError(
      "invalidArgument",
      `${field}: '${value}' is not a URL; give an http, https or file URL`,
    );
  }

  if (url.protocol === "file:") {
    checkFileUrl(core, field, url);
    return;
  }

  // The bytes come later by HTTP PUT to the URL of getImageUploadUrl; nothing is fetched.
  if (url.protocol === "upload:") {
    return;
  }

  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ApiError(
      "invalidArgument",
      `${field}: scheme '${url.protocol.replace(/:$/, "")}' is not supported; give an http, https, file or upload URL`,
    );
  }

  await checkHttpHost(core, field, url);
}

function checkFileUrl(core: Core, field: string, url: URL) {
  const path = posix.normalize(decodeURIComponent(url.pathname));
  const prefixes = allowedPrefixes(core);
  const allowed = prefixes.some((prefix) => path.startsWith(`${prefix}/`));

  if (url.host !== "" || !allowed) {
    throw new ApiError(
      "invalidArgument",
      `${field}: file URL path ${path} is not under an allowed prefix (${prefixes.join(", ") || "none configured"}); an admin can add a directory to the global config image.allowedFileUrlPrefixes`,
    );
  }
}

async function checkHttpHost(core: Core, field: string, url: URL) {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  let addresses: string[];

  if (isIP(hostname) !== 0) {
    addresses = [hostname];
  } else {
    try {
      addresses = (await lookup(hostname, { all: true })).map((entry) => entry.address);
    } catch (error) {
      throw new ApiError(
        "invalidArgument",
        `${field}: failed to resolve host ${hostname}: ${(error as Error).message}`,
      );
    }
  }

  for (const address of addresses) {
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";

    if (LOOPBACK.check(address, family) && !core.config.boolean("image", "allowLoopbackUrls")) {
      throw new ApiError(
        "invalidArgument",
        `${field}: host ${hostname} is the loopback address ${address}; image URLs must name another host unless the global config image.allowLoopbackUrls is true`,
      );
    }

    if (LINK_LOCAL.check(address, family) && !core.config.boolean("image", "allowLinkLocalUrls")) {
      throw new ApiError(
        "invalidArgument",
        `${field}: host ${hostname} is the link-local address ${address}; image URLs must not name one unless the global config image.allowLinkLocalUrls is true`,
      );
    }
  }
}

/** The URL with its query and credentials removed, because signed URLs carry tokens. */
export function redactUrl(value: string) {
  const url = new URL(value);
  url.search = "";
  url.username = "";
  url.password = "";
  return url.toString();
}
