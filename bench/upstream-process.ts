/** The demo upstream in a process of its own, so it does not share the gateway's event loop. */
import { startDemoUpstream } from "@airlock/gateway";

const upstream = await startDemoUpstream({
  port: Number(process.env.PORT),
  token: process.env.TOKEN ?? "",
});
process.stdout.write(`ready ${upstream.url}\n`);
