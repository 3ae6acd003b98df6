/**
 * Collects undo steps of a multi-step host change. Call `success()` when every step is done;
 * otherwise `revert()` runs the undo steps in reverse order and keeps going past failures.
 */
export class Reverter {
  #steps: Array<{ what: string; undo: () => Promise<unknown> | unknown }> = [];
  #done = false;

  /** Registers the undo of a step that just succeeded. */
  add(what: string, undo: () => Promise<unknown> | unknown) {
    this.#steps.push({ what, undo });
  }

  /** Keeps every change; later `revert()` calls do nothing. */
  success() {
    this.#done = true;
  }

  /** Undoes the registered steps in reverse order and returns the errors of failed undo steps. */
  async revert() {
    const errors: Error[] = [];

    if (this.#done) {
      return errors;
    }

    for (const step of this.#steps.reverse()) {
      try {
        await step.undo();
      } catch (error) {
        errors.push(new Error(`failed to undo ${step.what}: ${(error as Error).message}`));
      }
    }

    this.#steps = [];
    return errors;
  }
}
