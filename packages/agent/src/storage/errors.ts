/** Stable codes of storage failures, so the command server can map each to one reply. */
export type StorageErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "URL_NOT_ALLOWED"
  | "DOWNLOAD_FAILED"
  | "UPLOAD_FAILED"
  | "TOO_LARGE"
  | "CORRUPT_IMAGE"
  | "UNSUPPORTED_IMAGE"
  | "CHECKSUM_MISMATCH"
  | "ABORTED";

/** A storage operation that failed for a reason the caller can act on. */
export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StorageError";
  }
}
