export { type Server, type ServerOptions, startServer, VERSION } from "./server.js";
