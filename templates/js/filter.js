// {{name}}: a redrive filter in JavaScript (a WebAssembly component built with componentize-js). It replays dead
// letters whose recorded error looks transient (a timeout, a refused connection, throttling) and skips the others.
//
// The contract is the WIT world `filter` in wit/filter.wit. In JavaScript: fields are camelCase (errorText), an
// absent option is undefined, enums are strings ("replay"), and throwing a string returns it as the error.
// Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).

import { log } from "redrive:filter/host@0.1.0";

let patterns = ["timeout", "timed out", "connection refused", "throttl", "503"];

export function init(config) {
  for (const [key, value] of config) {
    if (key !== "transient") throw `unknown config key '${key}' (known keys: transient)`;
    patterns = value.split(",").map((p) => p.trim().toLowerCase()).filter((p) => p !== "");
  }
}

export function decide(msg) {
  const text = [msg.failure.errorText, msg.failure.errorClass]
    .filter((t) => t !== undefined)
    .map((t) => t.toLowerCase())
    .join("\n");
  const pattern = patterns.find((p) => text.includes(p));
  const verdict = pattern !== undefined ? "replay" : "skip";
  log("info", `${msg.id} -> ${verdict}`);
  const reason = pattern !== undefined ? `transient: ${pattern}` : "not a transient error";
  return { verdict, reason, body: undefined, attributeChanges: [] };
}
