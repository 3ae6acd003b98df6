import { describe, expect, it } from "vitest";
import { collectFacts, readBootId, readCapacity } from "./facts.js";
import { acceleratorWorks, probeBootSector } from "./kvm.js";

describe("probeBootSector", () => {
  it("is one boot sector with the signature", () => {
    const sector = probeBootSector();

    expect(sector.length).toBe(512);
    expect(sector[510]).toBe(0x55);
    expect(sector[511]).toBe(0xaa);
  });
});

describe("acceleratorWorks", () => {
  it("reaches the debug-exit port under TCG", async () => {
    expect(await acceleratorWorks("tcg")).toEqual({ ok: true, detail: "" });
  });
});

describe("collectFacts", () => {
  it("describes this host", async () => {
    const facts = await collectFacts();

    expect(facts.cpuNum).toBeGreaterThan(0);
    expect(facts.totalMemory).toBeGreaterThan(0);
    expect(facts.qemuVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(facts.osId).not.toBe("unknown");
    expect(["kvm", "tcg"]).toContain(facts.accel);
    expect(facts.accelReason).not.toBe("");
    expect(facts.runcVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(facts.containerUserNamespaces).toBe(false);
  });
});

describe("readCapacity", () => {
  it("reports available memory below total", async () => {
    const capacity = await readCapacity();

    expect(capacity.availableMemory).toBeGreaterThan(0);
    expect(capacity.availableMemory).toBeLessThanOrEqual(capacity.totalMemory);
  });
});

describe("readBootId", () => {
  it("is a UUID", async () => {
    expect(await readBootId()).toMatch(/^[0-9a-f-]{36}$/);
  });
});
