import { defineConfig } from "vitest/config";

/**
 * Tests that boot guests under TCG, run containers or hold the host's network: they are
 * CPU-bound and timing-sensitive, so they run one file at a time after the rest of the suite
 * instead of competing with it for the two cores of a small test machine.
 */
const HOST_TESTS = [
  "packages/agent/test/agent.e2e.test.ts",
  "packages/agent/test/boot-timing.test.ts",
  "packages/agent/src/vm/driver.test.ts",
  "packages/agent/src/vm/hotplug.test.ts",
  "packages/agent/src/container/driver.test.ts",
  "packages/server/test/container-metrics.test.ts",
  "packages/server/test/containers.test.ts",
  "packages/server/test/debian.test.ts",
  "packages/server/test/download-crash.test.ts",
  "packages/server/test/monitoring.test.ts",
  "packages/server/test/network-host.test.ts",
  "packages/server/test/security-groups.test.ts",
  "packages/server/test/smp-hosts.test.ts",
  "packages/server/test/snapshots.test.ts",
  "packages/server/test/templates.test.ts",
  "packages/server/test/vm-crash.test.ts",
  "packages/server/test/vm.test.ts",
  "packages/server/test/volume-attach.test.ts",
  "packages/server/test/vxlan-hosts.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    globalSetup: ["packages/server/test/postgres.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: ["packages/*/src/**/*.test.ts", "packages/*/test/**/*.test.ts"],
          exclude: HOST_TESTS,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "host",
          include: HOST_TESTS,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
