import { describe, expect, it } from "vitest";
import { httpInputSchema, methodOverrideField, pathProblem, resolveUrl } from "./http-input.js";

describe("the path rules and the upstream see one spelling", () => {
  it.each([
    ["/%61dmin/users", "/admin/users"],
    ["/%41%42%7e%2D", "/AB~-"],
    ["/a%20b", "/a%20b"],
    ["/caf%c3%a9", "/caf%C3%A9"],
    ["/plain", "/plain"],
    // Dots that are part of a name stay allowed; an encoded ; stays encoded.
    ["/files%3bv=2/a..b/.well-known", "/files%3Bv=2/a..b/.well-known"],
    // What a URL cannot hold as it is, encoded as the URL parser sends it: one spelling each.
    ["/caf\u00e9", "/caf%C3%A9"],
    ["/r\u00e9funds/caf%c3%a9", "/r%C3%A9funds/caf%C3%A9"],
    ["/\u{1F600}", "/%F0%9F%98%80"],
    ["/\uFF52efunds", "/%EF%BD%92efunds"],
    ['/a"b<c>`{d}^|[e]', "/a%22b%3Cc%3E%60%7Bd%7D%5E%7C%5Be%5D"],
    ["/!$&'()*+,=:@", "/!$&'()*+,=:@"],
  ])("normalises %j to %j", (path, expected) => {
    expect(httpInputSchema.parse({ method: "GET", path }).path).toBe(expected);
  });

  it.each(["/caf\u00e9", '/a"b<c>`{d}^|[e]', "/%7e%61/x%2cy", "/\u{1F600}/!$&'()*+,=:@"])(
    "gives %j the spelling the URL parser sends under the base path",
    (path) => {
      const normal = httpInputSchema.parse({ method: "GET", path }).path;
      expect(/^[\x21-\x7e]+$/.test(normal)).toBe(true);
      expect(resolveUrl("http://h:1/api", normal, { a: "1" }).pathname).toBe(`/api${normal}`);
      expect(resolveUrl("http://h:1/api", normal, undefined).pathname).toBe(`/api${normal}`);
    },
  );
});

describe("pathProblem", () => {
  it.each([
    ["relative", /must start with \//],
    ["", /must start with \//],
    ["//host/x", /must not start with \/\//],
    ["/../x", /\. or \.\. segments/],
    ["/a/../b", /\. or \.\. segments/],
    ["/a/..", /\. or \.\. segments/],
    ["/%2e%2e/x", /\. or \.\. segments/],
    ["/%2E%2E/x", /\. or \.\. segments/],
    ["/.%2e/x", /\. or \.\. segments/],
    ["/a%2f..%2fb", /must not encode a slash/],
    ["/a/./b", /\. or \.\. segments/],
    ["/a/%2e/b", /\. or \.\. segments/],
    // Tomcat and Jetty strip ;parameters from a segment before resolving dots.
    ["/api/..;/admin", /must not contain ;/],
    ["/admin;x=1", /must not contain ;/],
    ["/api/..%3b/admin", /\. or \.\. segments/],
    ["/a\\b", /backslashes/],
    ["/a%5cb", /must not encode a backslash/],
    ["/a%5Cb", /must not encode a backslash/],
    ["/a%25b", /must not encode a percent sign/],
    ["/a?b", /\?/],
    ["/a#b", /#/],
    ["/a b", /spaces/],
    ["/a\tb", /spaces/],
    ["/a\nb", /spaces/],
    ["/a%00b", /control characters/],
    ["/a%0ab", /control characters/],
    ["/a//b", /empty segments/],
    ["/a%2f%2fb", /must not encode a slash/],
    ["/%zz", /invalid percent-encoding/],
    ["/a%", /invalid percent-encoding/],
    ["/%e2%82", /invalid percent-encoding/],
    ["/a\ud800b", /not valid Unicode/],
    ["/a\udc00", /not valid Unicode/],
  ])("refuses %j", (path, message) => {
    expect(pathProblem(path)).toMatch(message);
  });

  it.each([
    "/",
    "/invoices/inv_1",
    "/a%20b",
    "/refunds/123",
    "/a/",
    "/a.b/c..d/.e",
    "/caf%C3%A9",
    "/@x:1",
  ])("accepts %j", (path) => {
    expect(pathProblem(path)).toBeUndefined();
  });
});

describe("httpInputSchema", () => {
  it("refuses a path that pathProblem refuses, naming the path", () => {
    const result = httpInputSchema.safeParse({ method: "GET", path: "/a/../b" });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(["path"]);
  });

  it("upper-cases the method and accepts a good path", () => {
    expect(httpInputSchema.parse({ method: "post", path: "/refunds/123" })).toEqual({
      method: "POST",
      path: "/refunds/123",
    });
  });
});

describe("methodOverrideField", () => {
  const form = { "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" };
  it.each([
    [{ method: "POST", path: "/x", query: { _method: "DELETE" } }, "input.query._method"],
    [{ method: "GET", path: "/x", query: { a: "1", _METHOD: ["PUT"] } }, "input.query._METHOD"],
    [{ method: "POST", path: "/x", body: { amount: 1, _method: "DELETE" } }, "input.body._method"],
    [{ method: "POST", path: "/x", headers: form, body: "a=1&_method=DELETE" }, "input.body"],
    [{ method: "POST", path: "/x", headers: form, body: "_%6Dethod=PUT" }, "input.body"],
    [
      {
        method: "POST",
        path: "/x",
        headers: { "content-type": "multipart/form-data; boundary=b" },
        body: '--b\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--',
      },
      "input.body",
    ],
  ])("finds the override in %j", (input, field) => {
    expect(methodOverrideField(httpInputSchema.parse(input))).toBe(field);
  });

  it.each([
    { method: "POST", path: "/x", query: { method: "card" } },
    { method: "POST", path: "/x", body: { payment: { _method: "card" }, method: "card" } },
    { method: "POST", path: "/x", body: "_method=DELETE" },
    { method: "POST", path: "/x", body: ["_method"] },
    { method: "POST", path: "/x", headers: form, body: "a=_method" },
  ])("finds none in %j", (input) => {
    expect(methodOverrideField(httpInputSchema.parse(input))).toBeUndefined();
  });
});

describe("resolveUrl", () => {
  it("keeps the base URL's path prefix", () => {
    expect(resolveUrl("http://h:1/api", "/x", undefined).href).toBe("http://h:1/api/x");
  });

  it("does not double the slash when the base ends with one", () => {
    expect(resolveUrl("http://h:1/api/", "/x", undefined).href).toBe("http://h:1/api/x");
    expect(resolveUrl("http://h:1/", "/x", undefined).href).toBe("http://h:1/x");
  });

  it("joins a base without a path", () => {
    expect(resolveUrl("https://billing.example", "/refunds/123", undefined).href).toBe(
      "https://billing.example/refunds/123",
    );
  });

  it("maps / to the base path itself", () => {
    expect(resolveUrl("http://h:1/api", "/", undefined).href).toBe("http://h:1/api/");
  });

  it("appends query values, repeating the key for arrays, and encodes them", () => {
    const url = resolveUrl("http://h:1/api", "/search", { q: "a b&c=d", tag: ["x", "y"] });
    expect(url.pathname).toBe("/api/search");
    expect(url.searchParams.get("q")).toBe("a b&c=d");
    expect(url.searchParams.getAll("tag")).toEqual(["x", "y"]);
    expect(url.search).toBe("?q=a+b%26c%3Dd&tag=x&tag=y");
  });

  it("drops a query string and fragment of the base URL", () => {
    expect(resolveUrl("http://h:1/api?key=1#frag", "/x", { a: "1" }).href).toBe(
      "http://h:1/api/x?a=1",
    );
  });

  it.each(["/@evil.example/x", "/:80/x", "/evil.example:443/x", "/a%2fb", "/%252e%252e/x"])(
    "never changes the origin for %j",
    (path) => {
      const url = resolveUrl("http://h:1/api", path, undefined);
      expect(url.origin).toBe("http://h:1");
      expect(url.pathname.startsWith("/api/")).toBe(true);
    },
  );

  it("keeps the origin even for a path that pathProblem would refuse", () => {
    const url = resolveUrl("http://h:1", "//evil.example/x", undefined);
    expect(url.origin).toBe("http://h:1");
    expect(url.host).toBe("h:1");
  });
});
