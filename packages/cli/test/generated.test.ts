import { Type } from "@sinclair/typebox";
import { type ApiRoute, apiRoutes } from "@tstack/api";
import type { Command } from "commander";
import { describe, expect, it } from "vitest";
import { CliContext } from "../src/context.js";
import { buildProgram } from "../src/program.js";

const vmRoutes: ApiRoute[] = [
  {
    name: "queryGadgetInstance",
    method: "GET",
    path: "/gadget-instances",
    kind: "query",
    resource: "GadgetInstance",
    summary: "Query VM instances",
  },
  {
    name: "createGadgetInstance",
    method: "POST",
    path: "/gadget-instances",
    kind: "create",
    resource: "GadgetInstance",
    params: Type.Object({
      name: Type.String(),
      instanceOfferingUuid: Type.String(),
      l3NetworkUuids: Type.Array(Type.String()),
      cpuNum: Type.Optional(Type.Integer()),
      strategy: Type.Optional(
        Type.Union([Type.Literal("InstantStart"), Type.Literal("JustCreate")]),
      ),
      limit: Type.Optional(Type.Integer()),
      ha: Type.Optional(Type.Boolean()),
    }),
    summary: "Create a VM instance",
  },
  {
    name: "startGadgetInstance",
    method: "PUT",
    path: "/gadget-instances/{uuid}/actions",
    kind: "action",
    resource: "GadgetInstance",
    params: Type.Object({}),
    summary: "Start a VM instance",
  },
];

function find(command: Command, ...names: string[]) {
  let current: Command | undefined = command;

  for (const name of names) {
    current = current?.commands.find((child) => child.name() === name);
  }

  return current;
}

function flags(command: Command | undefined) {
  return command?.options.map((option) => option.long) ?? [];
}

describe("generated commands", () => {
  const program = buildProgram(new CliContext(() => {}, [...apiRoutes, ...vmRoutes]));

  it("gives a newly declared resource its verbs and alias", () => {
    const vm = find(program, "gadget-instance");

    expect(vm?.aliases()).toEqual(["gadget"]);
    expect(vm?.commands.map((child) => child.name())).toEqual(
      expect.arrayContaining(["list", "get", "create", "start"]),
    );
    expect(find(program, "gadget-instance", "start")?.registeredArguments[0]?.name()).toBe(
      "gadget-instance",
    );
  });

  it("maps schema properties to flags", () => {
    const create = find(program, "gadget-instance", "create");
    const options = new Map(create?.options.map((option) => [option.long, option]));

    expect(flags(create)).toEqual(
      expect.arrayContaining([
        "--name",
        "--cpu-num",
        "--strategy",
        "--param-limit",
        "--ha",
        "--no-ha",
      ]),
    );
    expect(options.get("--name")?.mandatory).toBe(true);
    expect(options.get("--cpu-num")?.mandatory).toBe(false);
    expect(options.get("--strategy")?.argChoices).toEqual(["InstantStart", "JustCreate"]);
  });

  it("turns uuid references into resolvable resource flags", () => {
    const create = find(program, "gadget-instance", "create");

    expect(flags(create)).toContain("--instance-offering");
    expect(flags(create)).not.toContain("--instance-offering-uuid");
    // L3Network is declared too, so its uuid list becomes a repeatable resolvable flag.
    expect(flags(create)).not.toContain("--l3-network-uuids");
    expect(flags(create).some((flag) => flag?.startsWith("--l3-network"))).toBe(true);
  });

  it("resolves qualified uuid properties", () => {
    const create = find(program, "vm-instance", "create");
    const fromRoot = find(program, "image", "create-root-volume-template-from-root-volume");

    expect(flags(create)).toContain("--default-l3-network");
    expect(flags(create)).toContain("--l3-network");
    expect(fromRoot?.registeredArguments[0]?.name()).toBe("root-volume");
    expect(fromRoot?.registeredArguments[0]?.description).toBe("Volume name or uuid");
  });

  it("keeps today's resources", () => {
    const today = buildProgram(new CliContext(() => {}));

    expect(find(today, "zone", "change-state")).toBeDefined();
    expect(find(today, "cluster", "create")?.options.map((option) => option.long)).toContain(
      "--zone",
    );
    expect(find(today, "vm-instance", "console")).toBeDefined();
  });
});
