import type { IncomingMessage, ServerResponse } from "node:http";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** Weight of the newest turn in the running average of one request's cost. */
const COST_WEIGHT = 0.2;

/**
 * Wraps an HTTP request handler so that one turn of the event loop spends about `budgetMs` on
 * requests. Requests beyond the budget wait, in the order they arrived, for the next turns.
 *
 * libuv accepts one new connection per turn of the loop (libuv commit 6c692ad1c, "unix: don't
 * accept() connections in a loop"). Without a budget, a saturated server runs every ready request
 * in one turn. With 50 clients reading pages of 100 VMs at about 1.5 ms each, turns took 75 ms,
 * and a connection opened during the load waited up to 2 s to be accepted, readiness probes
 * included. With the budget, turns stay short and new connections are accepted during the load.
 *
 * A request's cost is known only after its promise callbacks have run, which is after the
 * handler call returns. So the wrapper measures whole turns: the time since the turn's first
 * request, divided by the requests run in it, feeds a running average. That average decides how
 * many waiting requests the next turn starts.
 */
export function withTurnBudget(handler: Handler, budgetMs: number): Handler {
  const waiting: Array<[IncomingMessage, ServerResponse]> = [];
  let turnStart = 0;
  let ranThisTurn = 0;
  let costMs = 0;
  let endScheduled = false;

  const run = (request: IncomingMessage, response: ServerResponse, now: number) => {
    if (ranThisTurn === 0) {
      turnStart = now;
    }

    ranThisTurn++;
    handler(request, response);
  };

  const endTurn = () => {
    endScheduled = false;
    const now = performance.now();

    if (ranThisTurn > 0) {
      const turnCost = (now - turnStart) / ranThisTurn;
      costMs = costMs === 0 ? turnCost : costMs + COST_WEIGHT * (turnCost - costMs);
    }

    ranThisTurn = 0;
    let allowance = Math.max(1, Math.floor(budgetMs / Math.max(costMs, 0.001)));

    while (allowance > 0 && waiting.length > 0) {
      const [request, response] = waiting.shift()!;

      // A client that disconnected while its request waited is skipped, so it costs nothing.
      if (!request.socket.destroyed) {
        run(request, response, now);
        allowance--;
      }
    }

    if (ranThisTurn > 0 || waiting.length > 0) {
      scheduleEnd();
    }
  };

  // An immediate set during the poll phase runs at the end of the same turn. One set by endTurn
  // runs at the end of the next turn, after that turn has accepted and read from connections.
  const scheduleEnd = () => {
    if (!endScheduled) {
      endScheduled = true;
      setImmediate(endTurn);
    }
  };

  return (request, response) => {
    const now = performance.now();
    const spent = ranThisTurn === 0 ? 0 : now - turnStart;

    if (waiting.length === 0 && spent < budgetMs) {
      run(request, response, now);
    } else {
      waiting.push([request, response]);
    }

    scheduleEnd();
  };
}
