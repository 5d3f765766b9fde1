import { describe, expect, it } from "vitest";
import { IssuedCredentialSeal } from "../../ext-service/src/policy/token-exchange.js";

/** The per-agent credential ext_authz seals for ext_proc of the same request (Envoy plane). */

const SECRET = "credential-secret-".padEnd(40, "c");
const credential = { token: "xt-0123456789abcdef", headers: { authorization: "Bearer xt-0123456789abcdef" } };

describe("issued credentials sealed for one request", () => {
  it("open on any replica with the keys, for that request and server only", () => {
    const sealed = new IssuedCredentialSeal([SECRET]).seal("req-1", "jira", credential);
    expect(sealed).not.toContain(credential.token);
    expect(new IssuedCredentialSeal([SECRET]).open("req-1", "jira", sealed)).toEqual(credential);
    expect(new IssuedCredentialSeal([SECRET]).open("req-2", "jira", sealed)).toBeUndefined();
    expect(new IssuedCredentialSeal([SECRET]).open("req-1", "wiki", sealed)).toBeUndefined();
    expect(
      new IssuedCredentialSeal(["other-".padEnd(40, "x")]).open("req-1", "jira", sealed),
    ).toBeUndefined();
    expect(
      new IssuedCredentialSeal([SECRET]).open("req-1", "jira", `${sealed.slice(0, -2)}AA`),
    ).toBeUndefined();
  });
});
