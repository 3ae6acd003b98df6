import { createHmac, timingSafeEqual } from "node:crypto";
import type { ImageFormat } from "./qemu-img.js";
import { assertUuid } from "./uuid.js";

/** Query parameters that authorize one image file download until `expires`. */
export interface ImageFileGrant {
  /** Expiry as seconds since the Unix epoch. */
  expires: number;
  /** Hex HMAC-SHA256 of the file path and the expiry. */
  token: string;
}

/** Path of an image file relative to the image store's HTTP prefix. */
export function imageFilePath(imageUuid: string, format: ImageFormat) {
  assertUuid(imageUuid, "image UUID");
  return `/images/${imageUuid}/${imageUuid}.${format}`;
}

/**
 * Signs a short-lived grant for one image file. The management node keeps the secret and hands
 * the resulting URL to a host, which needs no credentials of its own.
 */
export function signImageFile(
  secret: string,
  imageUuid: string,
  format: ImageFormat,
  expires: number,
): ImageFileGrant {
  return { expires, token: hmac(secret, imageFilePath(imageUuid, format), expires) };
}

/**
 * Builds a download URL for an image file that stays valid for `ttlSeconds`. `baseUrl` is the
 * image store's HTTP prefix, for example `http://10.0.0.5:7070/imagestore`.
 */
export function signedImageUrl(
  baseUrl: string,
  secret: string,
  image: { imageUuid: string; format: ImageFormat },
  ttlSeconds: number,
  now = Date.now(),
) {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const grant = signImageFile(secret, image.imageUuid, image.format, expires);
  const filePath = imageFilePath(image.imageUuid, image.format);
  return `${baseUrl.replace(/\/+$/, "")}${filePath}?expires=${expires}&token=${grant.token}`;
}

/** Checks a grant for `filePath` in constant time; false when forged, altered or expired. */
export function verifyImageFileGrant(
  secret: string,
  filePath: string,
  grant: { expires: unknown; token: unknown },
  now = Date.now(),
) {
  const expires = Number(grant.expires);

  if (!Number.isSafeInteger(expires) || typeof grant.token !== "string") {
    return false;
  }

  const expected = Buffer.from(hmac(secret, filePath, expires), "hex");
  const presented = Buffer.from(grant.token, "hex");

  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    return false;
  }

  return expires * 1000 > now;
}

function hmac(secret: string, filePath: string, expires: number) {
  return createHmac("sha256", secret).update(`${filePath}\n${expires}`).digest("hex");
}

/** Returns the path an upload grant covers; it is no file path, so no download grant uploads. */
export function imageUploadPath(imageUuid: string) {
  assertUuid(imageUuid, "image UUID");
  return `/uploads/${imageUuid}`;
}

/**
 * Builds the URL that accepts one image's bytes by HTTP PUT until `ttlSeconds` pass. The image
 * store takes them only while the management node waits for that upload.
 */
export function signedUploadUrl(
  baseUrl: string,
  secret: string,
  imageUuid: string,
  ttlSeconds: number,
  now = Date.now(),
) {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const uploadPath = imageUploadPath(imageUuid);
  const token = hmac(secret, uploadPath, expires);
  return `${baseUrl.replace(/\/+$/, "")}${uploadPath}?expires=${expires}&token=${token}`;
}
