export { QmpClient, type QmpConnectOptions, type QmpExecuteOptions } from "./client.js";
export { QmpError, type QmpEvent, type QmpGreeting } from "./types.js";
