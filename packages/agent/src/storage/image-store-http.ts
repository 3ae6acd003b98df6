import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { FastifyPluginAsync, FastifyReply } from "fastify";
import { findImage, storedImageFile } from "./image-store.js";
import { verifyImageFileGrant } from "./image-store-token.js";
import type { ImageFormat } from "./qemu-img.js";

/** Options of the image store's file server plugin. */
export interface ImageStoreHttpOptions {
  /** Root directory of the image store. */
  root: string;
  /** Secret shared with the management node that signs download URLs. */
  secret: string;
}

/** A byte range to send, inclusive at both ends as in HTTP. */
export interface ByteRange {
  start: number;
  end: number;
}

const FILE_NAME_PATTERN = /^([0-9a-f]{32})\.(qcow2|raw|tar)$/;

/**
 * Serves image files to other hosts at `GET /images/<uuid>/<uuid>.<format>?expires=&token=`,
 * with HEAD and single-range requests. Each request needs a valid grant from
 * `signedImageUrl`. The file path is rebuilt from the validated UUID and the stored format, so
 * no request text reaches the filesystem.
 */
export const imageStoreHttp: FastifyPluginAsync<ImageStoreHttpOptions> = async (app, options) => {
  app.get<{
    Params: { imageUuid: string; fileName: string };
    Querystring: { expires?: string; token?: string };
  }>("/images/:imageUuid/:fileName", async (request, reply) => {
    const { imageUuid, fileName } = request.params;
    const match = FILE_NAME_PATTERN.exec(fileName);

    if (!match || match[1] !== imageUuid) {
      return reply.code(404).send({ error: "image file not found" });
    }

    const grant = { expires: request.query.expires, token: request.query.token };

    if (!verifyImageFileGrant(options.secret, `/images/${imageUuid}/${fileName}`, grant)) {
      request.log.info({ imageUuid }, "image download rejected: invalid or expired token");
      return reply.code(403).send({ error: "invalid or expired download token" });
    }

    const image = await findImage(options.root, imageUuid);

    if (!image || image.format !== match[2]) {
      return reply.code(404).send({ error: "image file not found" });
    }

    return sendFile(reply, storedImageFile(options.root, imageUuid, image.format as ImageFormat), {
      range: request.headers.range,
      etag: `"${image.sha256}"`,
    });
  });
};

async function sendFile(
  reply: FastifyReply,
  file: string,
  request: { range: string | undefined; etag: string },
) {
  const { size } = await stat(file);
  reply.header("accept-ranges", "bytes").header("etag", request.etag);
  reply.type("application/octet-stream");

  const range = request.range === undefined ? undefined : parseRange(request.range, size);

  if (range === "unsatisfiable") {
    return reply.code(416).header("content-range", `bytes */${size}`).send();
  }

  if (range === undefined) {
    reply.header("content-length", size);
    return reply.send(createReadStream(file));
  }

  reply.code(206);
  reply.header("content-range", `bytes ${range.start}-${range.end}/${size}`);
  reply.header("content-length", range.end - range.start + 1);
  return reply.send(createReadStream(file, range));
}

/**
 * Parses a `Range` header for a file of `size` bytes. Returns undefined to send the whole
 * file, which RFC 9110 allows for multiple ranges and for headers it cannot parse.
 */
export function parseRange(header: string, size: number): ByteRange | "unsatisfiable" | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());

  if (!match || (match[1] === "" && match[2] === "")) {
    return undefined;
  }

  if (match[1] === "") {
    // A suffix range: the last N bytes.
    const length = Number(match[2]);
    return length === 0 || size === 0
      ? "unsatisfiable"
      : { start: Math.max(0, size - length), end: size - 1 };
  }

  const start = Number(match[1]);
  const end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);

  if (start >= size) {
    return "unsatisfiable";
  }

  return start <= end ? { start, end } : undefined;
}
