// route-by-error in AssemblyScript, as a command-profile redrive filter: a WASI preview-1 program
// (@assemblyscript/wasi-shim) that reads JSON requests on stdin, one per line, and answers each with one JSON
// line on stdout (guest-sdk/wit/command.schema.json). Same decisions and reasons as the Rust version in
// filters/route-by-error: a permanent pattern in the failure text -> skip; else a transient one -> replay; no
// failure text -> the `default` verdict ("no failure context"); no match -> `default` ("unclassified error").
//
// Build: ./build.sh OUT.wasm

import { serveLines } from "./lines";
import { JsonValue, parse, quote, ARRAY, STRING } from "./json";

const CONTRACT = "redrive:filter@0.1.0";

const DEFAULT_TRANSIENT: string[] = [
  "timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
  "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
  "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
];
const DEFAULT_PERMANENT: string[] = [
  "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
  "not found", "404", "constraint violation",
];

let transient: string[] = DEFAULT_TRANSIENT;
let permanent: string[] = DEFAULT_PERMANENT;
let fallback = "skip";
let ready = false;

function error(text: string): string {
  return '{"error":' + quote(text) + "}";
}

/** Comma-separated items, trimmed and lowercased, empty ones dropped (as the Rust SDK's get_list). */
function splitList(value: string): string[] {
  const items: string[] = [];
  const parts = value.split(",");
  for (let i = 0; i < parts.length; i++) {
    const item = parts[i].trim();
    if (item.length > 0) items.push(item.toLowerCase());
  }
  return items;
}

function pairText(pair: JsonValue, index: i32): string {
  if (pair.kind != ARRAY || pair.items.length <= index) return "";
  const item = pair.items[index];
  return item.kind == STRING ? item.text : "";
}

function init(config: JsonValue | null): string {
  const pairs: JsonValue[] = config != null && config.kind == ARRAY ? config.items : [];
  for (let i = 0; i < pairs.length; i++) {
    const key = pairText(pairs[i], 0);
    if (key != "transient" && key != "permanent" && key != "default") {
      return error("unknown config key '" + key + "' (known keys: transient, permanent, default)");
    }
  }
  let t = DEFAULT_TRANSIENT, p = DEFAULT_PERMANENT, d = "skip";
  for (let i = 0; i < pairs.length; i++) {
    const key = pairText(pairs[i], 0);
    const value = pairText(pairs[i], 1);
    if (key == "transient") t = splitList(value);
    else if (key == "permanent") p = splitList(value);
    else {
      const verdict = value.trim().toLowerCase();
      if (verdict != "replay" && verdict != "skip" && verdict != "discard") {
        return error("config key 'default': invalid value '" + value + "' (expected one of replay, skip, discard)");
      }
      d = verdict;
    }
  }
  transient = t;
  permanent = p;
  fallback = d;
  ready = true;
  return '{"ok":true}';
}

function decide(message: JsonValue | null): string {
  if (!ready) return error("decide before a successful init");
  const failure = message != null ? message.get("failure") : null;
  let haystack = "";
  let present = 0;
  let known = false;
  const keys = ["error_text", "error_class", "reason"];
  for (let i = 0; i < keys.length; i++) {
    const text = failure != null ? failure.getString(keys[i]) : null;
    if (text == null) continue;
    if (present > 0) haystack += "\n";
    haystack += text.toLowerCase();
    present++;
    if (text.trim().length > 0) known = true;
  }
  let verdict = fallback, reason = "unclassified error", kind = "unclassified";
  if (!known) {
    reason = "no failure context";
    kind = "no-context";
  } else {
    let matched = false;
    for (let i = 0; i < permanent.length && !matched; i++) {
      if (haystack.includes(permanent[i])) {
        verdict = "skip";
        reason = 'permanent error: matched "' + permanent[i] + '"';
        kind = "permanent";
        matched = true;
      }
    }
    for (let i = 0; i < transient.length && !matched; i++) {
      if (haystack.includes(transient[i])) {
        verdict = "replay";
        reason = 'transient error: matched "' + transient[i] + '"';
        kind = "transient";
        matched = true;
      }
    }
  }
  process.stderr.write("info: error class: " + kind + " -> " + verdict + "\n");
  return '{"verdict":' + quote(verdict) + ',"reason":' + quote(reason) + "}";
}

function handle(line: string): string {
  const request = parse(line);
  if (request == null) return error("not a JSON request");
  const contract = request.getString("contract");
  if (contract == null || contract != CONTRACT) {
    return error("this filter speaks " + CONTRACT + ", not " + (contract != null ? contract : "(none)"));
  }
  const call = request.getString("call");
  if (call == "init") return init(request.get("config"));
  if (call == "decide") return decide(request.get("message"));
  return error("unknown call");
}

serveLines(handle);
