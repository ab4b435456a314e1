// route-by-error in TypeScript: a redrive filter component, compiled to an ES module with tsc and then to a
// component with componentize-js. Same decisions and reasons as the Rust version in filters/route-by-error:
//
// - a permanent pattern in the failure text (error text, error class, broker reason; lowercased) -> skip;
// - else a transient pattern -> replay;
// - no failure text at all -> the `default` verdict, reason "no failure context";
// - no pattern matches -> the `default` verdict, reason "unclassified error".
//
// Config: `transient`, `permanent` (comma-separated patterns replacing the defaults), `default` (replay, skip or
// discard; skip when absent). Build: ./build.sh OUT.wasm. The WIT types are in
// templates/ts/redrive-filter.d.ts (the one `redrive filter new --lang ts` writes).

import { log } from "redrive:filter/host@0.1.0";

const DEFAULT_TRANSIENT: string[] = [
  "timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
  "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
  "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
];
const DEFAULT_PERMANENT: string[] = [
  "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
  "not found", "404", "constraint violation",
];
const KNOWN_KEYS = ["transient", "permanent", "default"];
const VERDICTS: Redrive.Verdict[] = ["replay", "skip", "discard"];

interface Settings {
  transient: string[];
  permanent: string[];
  fallback: Redrive.Verdict;
}

let settings: Settings = { transient: DEFAULT_TRANSIENT, permanent: DEFAULT_PERMANENT, fallback: "skip" };

/** Comma-separated items, trimmed and lowercased, empty ones dropped (as the Rust SDK's get_list). */
function splitList(value: string): string[] {
  return value.split(",").map((item) => item.trim().toLowerCase()).filter((item) => item !== "");
}

/** WIT export `init`: read the configuration, or throw the reason (a string) to refuse it. */
export function init(config: [string, string][]): void {
  for (const [key] of config) {
    if (!KNOWN_KEYS.includes(key)) {
      throw `unknown config key '${key}' (known keys: transient, permanent, default)`;
    }
  }
  const next: Settings = { ...settings };
  for (const [key, value] of config) {
    if (key === "transient") next.transient = splitList(value);
    else if (key === "permanent") next.permanent = splitList(value);
    else {
      const verdict = VERDICTS.find((v) => v === value.trim().toLowerCase());
      if (verdict === undefined) {
        throw `config key 'default': invalid value '${value}' (expected one of replay, skip, discard)`;
      }
      next.fallback = verdict;
    }
  }
  settings = next;
}

type Classified = [Redrive.Verdict, string, string];

function classify(failure: Redrive.FailureInfo): Classified {
  const texts = [failure.errorText, failure.errorClass, failure.reason].filter((t): t is string => t !== undefined);
  if (texts.every((t) => t.trim() === "")) return [settings.fallback, "no failure context", "no-context"];
  const haystack = texts.map((t) => t.toLowerCase()).join("\n");
  const permanent = settings.permanent.find((p) => haystack.includes(p));
  if (permanent !== undefined) return ["skip", `permanent error: matched "${permanent}"`, "permanent"];
  const transient = settings.transient.find((p) => haystack.includes(p));
  if (transient !== undefined) return ["replay", `transient error: matched "${transient}"`, "transient"];
  return [settings.fallback, "unclassified error", "unclassified"];
}

/** WIT export `decide`: one decision per message. */
export function decide(msg: Redrive.Message): Redrive.Decision {
  const [verdict, reason, kind] = classify(msg.failure);
  log("info", `error class: ${kind} -> ${verdict}`);
  return { verdict, reason, body: undefined, attributeChanges: [] };
}
