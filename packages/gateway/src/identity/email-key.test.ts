import { describe, expect, it } from "vitest";
import { emailKey } from "./email-key.js";

describe("emailKey", () => {
  it("lowercases an address, non-ASCII letters included", () => {
    expect(emailKey("Bob@Example.COM")).toBe("bob@example.com");
    expect(emailKey("JÜRGEN@example.de")).toBe("jürgen@example.de");
  });

  it("keys nobody by an address that lowercasing would fold into another", () => {
    // The Kelvin sign lowercases to k, and İ to i with a combining dot.
    expect("\u212Aim@example.com".toLowerCase()).toBe("kim@example.com");
    expect(emailKey("\u212Aim@example.com")).toBeUndefined();
    expect(emailKey("\u0130vy@example.com")).toBeUndefined();
  });
});
