import { expect, it } from "vitest";
import { webhookNames } from "./channel-registry.js";

it("names unnamed webhooks by their URL, so reordering them redirects nothing", () => {
  const a = { url: "https://siem.example/hook" };
  const b = { url: "https://partner.example/hook" };
  const named = { url: "https://ops.example/hook", name: "ops" };
  const [first, second, third] = webhookNames([a, b, named]);
  expect(first).toMatch(/^webhook-[0-9a-f]{8}$/);
  expect(second).not.toBe(first);
  expect(third).toBe("ops");
  const [reordered, ...rest] = webhookNames([named, b, a]);
  expect([reordered, ...rest]).toEqual([third, second, first]);
  // The same URL twice, told apart by order.
  expect(webhookNames([a, a])).toEqual([first, `${first}-2`]);
});
