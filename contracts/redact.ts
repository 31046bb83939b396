/**
 * Hiding credentials in server URLs before anything logs or prints them.
 *
 * `nats://user:pass@host:4222` and `nats://TOKEN@host:4222` carry secrets in
 * the URL's userinfo. Agent and operator pass every server URL, and every
 * error message that may quote one (the URL parser's "Invalid URL: '…'"
 * does), through {@linkcode redactUrl} before it reaches a log or a terminal.
 *
 * @module
 */

/** What replaces a URL's userinfo. */
export const REDACTED_USERINFO = "***";

/**
 * `scheme://` followed by the authority: it ends at `/ ? #` (RFC 3986: a
 * userinfo cannot hold them unencoded) or at a character that ends a URL in
 * running text (whitespace, quotes, angle brackets, the backslash of a JSON
 * escape) or where the next `scheme://` starts (a comma-separated list).
 * Commas stay inside, so a comma in a password cannot leave its tail visible;
 * a bare list `a@b,c@d` loses the hosts before the last `@`, never a secret.
 */
const URL_AUTHORITY = /([a-z][a-z0-9+.-]*:\/\/)((?:(?![a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'`<>\\])*)/gi;

/** A bare `userinfo@host[:port]` (the NATS client accepts servers without a scheme). */
const BARE_AUTHORITY = /^[^\s/?#"'`<>\\]*@[^\s/?#"'`<>\\@]*$/;

/**
 * Replaces the userinfo of every URL in `text` with `***`: one URL
 * (`nats://user:pass@host:4222` → `nats://***@host:4222`), a bare
 * `user:pass@host:4222`, or any message that quotes URLs. Everything else is
 * returned unchanged. Pure.
 *
 * @example
 * ```ts
 * redactUrl("nats://drover:s3cret@nats.example.com:4222"); // "nats://***@nats.example.com:4222"
 * redactUrl("nats://s3cret-token@host"); // "nats://***@host"
 * redactUrl("Invalid URL: 'http://u:p@bad host'"); // "Invalid URL: 'http://***@bad host'"
 * ```
 */
export function redactUrl(text: string): string {
  if (BARE_AUTHORITY.test(text)) return REDACTED_USERINFO + text.slice(text.lastIndexOf("@"));
  return text.replace(URL_AUTHORITY, (whole: string, scheme: string, authority: string) => {
    // The last "@" ends the userinfo: a raw "@" inside a password comes before it.
    const at = authority.lastIndexOf("@");
    return at < 0 ? whole : `${scheme}${REDACTED_USERINFO}${authority.slice(at)}`;
  });
}
