import { describe, expect, it } from "vitest";
import { signRequest, verifyRequest } from "./auth.js";

const secret = "0123456789abcdef0123456789abcdef";
const now = 1_800_000_000_000;

describe("signRequest", () => {
  it("produces the documented HMAC", async () => {
    const { createHash, createHmac } = await import("node:crypto");
    const body = '{"a":1}';
    const bodyHash = createHash("sha256").update(body).digest("hex");
    const expected = createHmac("sha256", secret)
      .update(`POST\n/vm/start\n${now}\n${bodyHash}`)
      .digest("hex");

    const headers = signRequest(secret, "post", "/vm/start", body, now);

    expect(headers["X-Tstack-Timestamp"]).toBe(String(now));
    expect(headers["X-Tstack-Signature"]).toBe(expected);
  });
});

describe("verifyRequest", () => {
  const body = '{"vmUuid":"x"}';
  const signed = signRequest(secret, "POST", "/vm/stop", body, now);

  it("accepts a fresh signature with lower-case headers", () => {
    const lower = {
      "x-tstack-timestamp": signed["X-Tstack-Timestamp"],
      "x-tstack-signature": signed["X-Tstack-Signature"],
    };

    expect(verifyRequest(secret, "POST", "/vm/stop", body, lower, now + 1000)).toEqual({
      ok: true,
    });
  });

  it("accepts a Buffer body equal to the string", () => {
    const result = verifyRequest(secret, "POST", "/vm/stop", Buffer.from(body), { ...signed }, now);

    expect(result.ok).toBe(true);
  });

  it.each([
    ["another secret", "other-secret", "POST", "/vm/stop", body],
    ["another method", secret, "PUT", "/vm/stop", body],
    ["another path", secret, "POST", "/vm/start", body],
    ["another body", secret, "POST", "/vm/stop", '{"vmUuid":"y"}'],
  ])("rejects %s", (_case, key, method, path, text) => {
    const result = verifyRequest(key, method, path, text, { ...signed }, now);

    expect(result).toEqual({ ok: false, reason: "invalid X-Tstack-Signature" });
  });

  it("rejects a timestamp older than 300 s", () => {
    const result = verifyRequest(secret, "POST", "/vm/stop", body, { ...signed }, now + 300_001);

    expect(result.ok).toBe(false);
  });

  it("rejects a timestamp further than 300 s ahead", () => {
    const result = verifyRequest(secret, "POST", "/vm/stop", body, { ...signed }, now - 300_001);

    expect(result.ok).toBe(false);
  });

  it("accepts a timestamp exactly 300 s old", () => {
    const result = verifyRequest(secret, "POST", "/vm/stop", body, { ...signed }, now + 300_000);

    expect(result.ok).toBe(true);
  });

  it("rejects missing headers", () => {
    const result = verifyRequest(secret, "POST", "/vm/stop", body, {}, now);

    expect(result).toEqual({
      ok: false,
      reason: "missing X-Tstack-Timestamp or X-Tstack-Signature header",
    });
  });

  it("rejects a malformed signature", () => {
    const headers = { ...signed, "X-Tstack-Signature": "zz" };

    expect(verifyRequest(secret, "POST", "/vm/stop", body, headers, now).ok).toBe(false);
  });

  it("rejects a non-numeric timestamp", () => {
    const headers = { ...signed, "X-Tstack-Timestamp": "1e12" };

    expect(verifyRequest(secret, "POST", "/vm/stop", body, headers, now).ok).toBe(false);
  });
});
