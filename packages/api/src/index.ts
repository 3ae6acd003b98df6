export * from "./common.js";
export * from "./errors.js";
export * as Inventory from "./inventories.js";
export { sha512Hex } from "./password.js";
export * from "./query.js";
export * from "./routes/index.js";
