import { type ApiRoute, apiRoutes } from "@tstack/api";
import { buildCatalog, findResource, kebab } from "@tstack/sdk";
import { describe, expect, it } from "vitest";

function verbs(resource: string, routes: ApiRoute[] = apiRoutes) {
  const entry = findResource(buildCatalog(routes), resource);
  return Object.fromEntries(
    [...(entry?.operations ?? [])].map(([verb, route]) => [verb, route.name]),
  );
}

describe("resource catalog", () => {
  it("groups crud routes under their resource", () => {
    expect(verbs("zone")).toEqual({
      create: "createZone",
      update: "updateZone",
      delete: "deleteZone",
      "change-state": "changeZoneState",
    });
    expect(findResource(buildCatalog(), "zone")?.query?.name).toBe("queryZone");
  });

  it("places routes without a resource by name, path and verb", () => {
    expect(verbs("api-job")).toEqual({ cancel: "cancelApiJob" });
    expect(verbs("management-node")).toEqual({ "get-version": "getVersion" });
    expect(verbs("global-config")).toEqual({
      update: "updateGlobalConfig",
      reset: "resetGlobalConfig",
    });
    expect(verbs("tag")).toEqual({ delete: "deleteTag" });
    expect(verbs("session")).toEqual({ renew: "renewSession", validate: "validateSession" });
  });

  it("leaves login and logout to their own commands", () => {
    const names = [...buildCatalog().values()].flatMap((entry) =>
      [...entry.operations.values()].map((route) => route.name),
    );

    expect(names).not.toContain("logInByAccount");
    expect(names).not.toContain("logOut");
  });

  it("picks up a newly declared resource", () => {
    const vm: ApiRoute[] = [
      {
        name: "queryGadgetInstance",
        method: "GET",
        path: "/gadget-instances",
        kind: "query",
        resource: "GadgetInstance",
        summary: "Query VMs",
      },
      {
        name: "createGadgetInstance",
        method: "POST",
        path: "/gadget-instances",
        kind: "create",
        resource: "GadgetInstance",
        summary: "Create a VM",
      },
      {
        name: "startGadgetInstance",
        method: "PUT",
        path: "/gadget-instances/{uuid}/actions",
        kind: "action",
        resource: "GadgetInstance",
        summary: "Start a VM",
      },
      {
        name: "getGadgetConsoleAddress",
        method: "GET",
        path: "/gadget-instances/{uuid}/console-addresses",
        kind: "sync",
        summary: "Console",
      },
    ];

    expect(verbs("gadget", [...apiRoutes, ...vm])).toEqual({
      create: "createGadgetInstance",
      start: "startGadgetInstance",
      "get-gadget-console-address": "getGadgetConsoleAddress",
    });
  });

  it("converts names to kebab case", () => {
    expect(kebab("InstanceOffering")).toBe("instance-offering");
    expect(kebab("l3NetworkUuid")).toBe("l3-network-uuid");
    expect(kebab("ApiJob")).toBe("api-job");
  });
});
