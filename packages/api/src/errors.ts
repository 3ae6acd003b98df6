/**
 * ZStack's error body and the generic error codes tstack returns. Codes keep ZStack's
 * numbering so that ZStack's SDKs and scripts that match on them keep working.
 */
export interface ErrorBody {
  code: string;
  description: string;
  details: string;
  elaboration?: string;
  location?: string;
  cause?: ErrorBody;
  opaque?: Record<string, unknown>;
}

/** Error codes with ZStack's meaning, description and the HTTP status used when rejected at once. */
export const ErrorCodes = {
  internal: { code: "SYS.1000", description: "An internal error happened", status: 500 },
  timeout: { code: "SYS.1001", description: "An operation timed out", status: 503 },
  createFailed: { code: "SYS.1002", description: "Failed to create the resource", status: 503 },
  notFound: { code: "SYS.1003", description: "The resource was not found", status: 404 },
  operationFailed: { code: "SYS.1006", description: "An operation failed", status: 503 },
  invalidArgument: {
    code: "SYS.1007",
    description: "One or more API arguments are invalid",
    status: 400,
  },
  notReady: { code: "SYS.1010", description: "The management node is not ready", status: 503 },
  conflict: {
    code: "SYS.1011",
    description: "The request conflicts with an earlier one",
    status: 409,
  },
  cancelled: { code: "SYS.1012", description: "The operation was cancelled", status: 503 },
  authentication: { code: "ID.1000", description: "Authentication failed", status: 401 },
  invalidSession: {
    code: "ID.1001",
    description: "The session is invalid or expired",
    status: 401,
  },
  permissionDenied: { code: "ID.1002", description: "Permission denied", status: 403 },
  quotaExceeded: { code: "ID.1003", description: "Quota exceeded", status: 503 },
  invalidState: {
    code: "SYS.1013",
    description: "The resource is in a state that does not allow the operation",
    status: 409,
  },
} as const;

export type ErrorKind = keyof typeof ErrorCodes;

/** An error that carries a ZStack code; thrown by services and mapped to a body in one place. */
export class ApiError extends Error {
  readonly code: string;
  readonly description: string;
  readonly status: number;

  constructor(
    readonly kind: ErrorKind,
    readonly details: string,
    readonly elaboration?: string,
    readonly causeBody?: ErrorBody,
  ) {
    super(details);
    this.name = "ApiError";
    this.code = ErrorCodes[kind].code;
    this.description = ErrorCodes[kind].description;
    this.status = ErrorCodes[kind].status;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = {
      code: this.code,
      description: this.description,
      details: this.details,
    };

    if (this.elaboration) {
      body.elaboration = this.elaboration;
    }

    if (this.causeBody) {
      body.cause = this.causeBody;
    }

    return body;
  }
}
