import type { JobProgress } from "@tstack/sdk";

const BAR_WIDTH = 30;

/**
 * Draws a job's progress on one terminal line of stderr, or nothing when stderr is not a
 * terminal, so piped output and logs stay clean.
 */
export class ProgressBar {
  private drawn = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  get enabled() {
    return this.stream.isTTY === true;
  }

  update(job: JobProgress) {
    if (!this.enabled) {
      return;
    }

    const percent = Math.max(0, Math.min(100, job.progress ?? 0));
    const filled = Math.round((percent / 100) * BAR_WIDTH);
    const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
    const label = job.progress === null ? "running" : `${percent}%`;
    this.stream.write(`\r\x1b[2K[${bar}] ${label} ${job.progressText ?? ""}`);
    this.drawn = true;
  }

  /** Clears the line, so the result prints on a clean one. */
  end() {
    if (this.drawn) {
      this.stream.write("\r\x1b[2K");
      this.drawn = false;
    }
  }
}
