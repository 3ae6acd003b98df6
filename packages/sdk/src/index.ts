export { buildCatalog, findResource, kebab, type ResourceEntry } from "./catalog.js";
export {
  type ApiName,
  type CallOptions,
  type ClientOptions,
  isJobRoute,
  type JobAccepted,
  type JobProgress,
  type ParamsOf,
  type ReplyOf,
  type RouteNamed,
  TstackClient,
  type TypedApi,
  type TypedCallOptions,
} from "./client.js";
export { ApiRequestError, ConnectionError } from "./errors.js";
export {
  type CanonicalEvent,
  type EventStreamOptions,
  followEvents,
  parseEvents,
} from "./events.js";
export { ResolveError, resolveUuid } from "./resolve.js";
