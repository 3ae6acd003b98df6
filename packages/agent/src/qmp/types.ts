/** One asynchronous QMP event, such as SHUTDOWN, STOP or GUEST_PANICKED. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** QEMU's greeting, sent once when a QMP connection opens. */
export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

/** A command that QEMU replied to with an error object, or that timed out or lost its socket. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    /** QMP error class such as `GenericError` or `CommandNotFound`; `Timeout` or `Closed` locally. */
    readonly errorClass: string,
    message: string,
  ) {
    super(message);
    this.name = "QmpError";
  }
}
