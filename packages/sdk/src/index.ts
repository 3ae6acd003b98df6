export { ApiRequestError, type CallOptions, type ClientOptions, TstackClient } from "./client.js";
