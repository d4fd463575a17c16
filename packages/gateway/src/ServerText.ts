/**
 * Text the server chose (a close frame's reason) before it reaches any message, status, log
 * or span: bounded, printable, and without the token. A hostile server can echo the token it
 * was sent, pad the text to any length, or hide line breaks and bidi overrides in it.
 */
import { Redacted } from "effect"

/** A close reason's largest legal size on the wire: a 125-byte control frame minus the code. */
export const maxBytes = 123

/** What stands in for a secret. */
export const redactedMark = "[redacted]"

/**
 * A run this long that also occurs in the token counts as an echo of it (a server may echo a
 * part, or the text may be cut inside it). Shorter runs match ordinary words too easily.
 */
const fragmentChars = 8

/** How much of the text is looked at: more than `maxBytes` keeps, less than any padding. */
const windowChars = 4 * maxBytes

/** A Discord token's shape (base64 user id, timestamp, HMAC): redacted even when no token is given. */
const tokenShape = /[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}/g

/** C0/C1 controls (line breaks included) and format characters (bidi overrides, zero widths). */
const invisible = /[\p{Cc}\p{Cf}]/gu

const utf8 = new TextEncoder()

/**
 * `text` made safe to repeat: at most `maxBytes` UTF-8 bytes, no control or format
 * characters, the token (given as `secret`, or anything shaped like one) and any long run
 * of it replaced by `[redacted]`.
 */
export const sanitize = (text: string, secret?: Redacted.Redacted<string>): string => {
  // Controls go first: a token split by them would otherwise escape the redaction.
  let clean = text.slice(0, windowChars).replace(invisible, "")
  if (secret !== undefined) clean = redactEcho(clean, Redacted.value(secret))
  return truncate(clean.replace(tokenShape, redactedMark), maxBytes)
}

/** Replaces every run of `text` of `fragmentChars` or more that occurs in `secret`. */
const redactEcho = (text: string, secret: string): string => {
  if (secret.length === 0) return text
  const least = Math.min(fragmentChars, secret.length)
  let out = ""
  let i = 0
  while (i < text.length) {
    let length = 0
    while (i + length < text.length && secret.includes(text.slice(i, i + length + 1))) length++
    if (length >= least) {
      out += redactedMark
      i += length
    } else {
      out += text[i]
      i++
    }
  }
  return out
}

/** The longest prefix of `text` within `bytes` UTF-8 bytes, never splitting a character. */
const truncate = (text: string, bytes: number): string => {
  if (utf8.encode(text).length <= bytes) return text
  let out = ""
  let used = 0
  for (const char of text) {
    used += utf8.encode(char).length
    if (used > bytes) break
    out += char
  }
  return out
}
