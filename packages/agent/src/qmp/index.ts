export { QmpClient, type QmpConnectOptions, type QmpExecuteOptions } from "./client.js";
export { type QmpEvent, QmpError, type QmpGreeting } from "./types.js";
