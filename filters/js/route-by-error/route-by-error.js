// route-by-error in JavaScript: a redrive filter component (componentize-js), implementing the WIT world
// `filter` of guest-sdk/wit/filter.wit. Same decisions and reasons as the Rust version in filters/route-by-error:
//
// - a permanent pattern in the failure text (error text, error class, broker reason; lowercased) -> skip;
// - else a transient pattern -> replay;
// - no failure text at all -> the `default` verdict, reason "no failure context";
// - no pattern matches -> the `default` verdict, reason "unclassified error".
//
// Config: `transient`, `permanent` (comma-separated patterns replacing the defaults), `default` (replay, skip or
// discard; skip when absent). Build: ./build.sh OUT.wasm
//
// WIT in JavaScript: record fields are camelCase (`errorText`), an absent option is `undefined`, enums are
// strings (`"replay"`), `list<u8>` is a Uint8Array, and throwing a string returns it as the `result`'s error.

import { log } from "redrive:filter/host@0.1.0";

const DEFAULT_TRANSIENT = [
  "timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
  "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
  "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
];
const DEFAULT_PERMANENT = [
  "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
  "not found", "404", "constraint violation",
];
const KNOWN_KEYS = ["transient", "permanent", "default"];
const VERDICTS = ["replay", "skip", "discard"];

let settings = { transient: DEFAULT_TRANSIENT, permanent: DEFAULT_PERMANENT, fallback: "skip" };

/** Comma-separated items, trimmed and lowercased, empty ones dropped (as the Rust SDK's get_list). */
function splitList(value) {
  return value.split(",").map((item) => item.trim().toLowerCase()).filter((item) => item !== "");
}

/** WIT export `init`: read the configuration, or throw the reason to refuse it. */
export function init(config) {
  for (const [key] of config) {
    if (!KNOWN_KEYS.includes(key)) {
      throw `unknown config key '${key}' (known keys: transient, permanent, default)`;
    }
  }
  const next = { ...settings };
  for (const [key, value] of config) {
    if (key === "transient") next.transient = splitList(value);
    else if (key === "permanent") next.permanent = splitList(value);
    else {
      const verdict = value.trim().toLowerCase();
      if (!VERDICTS.includes(verdict)) {
        throw `config key 'default': invalid value '${value}' (expected one of replay, skip, discard)`;
      }
      next.fallback = verdict;
    }
  }
  settings = next;
}

function classify(failure) {
  const texts = [failure.errorText, failure.errorClass, failure.reason].filter((t) => t !== undefined);
  if (texts.every((t) => t.trim() === "")) return [settings.fallback, "no failure context", "no-context"];
  const haystack = texts.map((t) => t.toLowerCase()).join("\n");
  const permanent = settings.permanent.find((p) => haystack.includes(p));
  if (permanent !== undefined) return ["skip", `permanent error: matched "${permanent}"`, "permanent"];
  const transient = settings.transient.find((p) => haystack.includes(p));
  if (transient !== undefined) return ["replay", `transient error: matched "${transient}"`, "transient"];
  return [settings.fallback, "unclassified error", "unclassified"];
}

/** WIT export `decide`: one decision per message. */
export function decide(msg) {
  const [verdict, reason, kind] = classify(msg.failure);
  log("info", `error class: ${kind} -> ${verdict}`);
  return { verdict, reason, body: undefined, attributeChanges: [] };
}
