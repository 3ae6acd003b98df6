import { ApiError } from "@tstack/api";
import { UUID_PATTERN } from "../core/ids.js";
import { queryHandler } from "../resources/crud.js";
import { defineResource } from "../resources/registry.js";
import type { ApiHandlers } from "../rest/api.js";

defineResource({
  type: "ApiJob",
  table: "apiJobs",
  key: "uuid",
  visibility: "owner",
  fields: {
    uuid: "string",
    apiName: "string",
    state: "string",
    accountUuid: "string",
    resourceUuid: "string",
    progress: "number",
    createDate: "date",
    lastOpDate: "date",
    deadline: "date",
  },
  toInventory: (row) => ({
    uuid: row.uuid,
    apiName: row.apiName,
    state: row.state,
    progress: row.progress ?? null,
    progressText: row.progressText ?? null,
    accountUuid: row.accountUuid ?? null,
    resourceUuid: row.resourceUuid ?? null,
    managementNodeUuid: row.managementNodeUuid,
    deadline: row.deadline,
    createDate: row.createDate,
    lastOpDate: row.lastOpDate,
  }),
});

export const jobHandlers: ApiHandlers = {
  queryApiJob: queryHandler("ApiJob"),
  cancelApiJob: {
    async run(core, call) {
      const uuid = call.path.uuid!;

      if (!UUID_PATTERN.test(uuid)) {
        throw new ApiError("invalidArgument", `invalid job uuid '${uuid}'`);
      }

      const job = await core.kysely
        .selectFrom("apiJobs")
        .select(["accountUuid", "state"])
        .where("uuid", "=", uuid)
        .executeTakeFirst();

      if (!job || (!call.caller.isAdmin && job.accountUuid !== call.caller.accountUuid)) {
        throw new ApiError("notFound", `job ${uuid} was not found`);
      }

      if (job.state !== "Running") {
        throw new ApiError("invalidState", `job ${uuid} already ended in state ${job.state}`);
      }

      await core.jobs.cancel(uuid);
      return { cancelled: true };
    },
  },
};
