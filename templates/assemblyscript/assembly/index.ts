// {{name}}: a redrive filter in AssemblyScript (command profile). It replays dead letters whose recorded error
// looks transient (a timeout, a refused connection, throttling) and skips the others.
//
// redrive runs it as a WASI program: JSON requests arrive on stdin, one per line (first `init` with the
// configuration, then one `decide` per message); it answers each with one JSON line on stdout. The format is in
// command.schema.json; json.ts reads and writes JSON. Lines written to stderr become the message's log lines.
// Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).

import { serveLines } from "./lines";
import { JsonValue, parse, quote, ARRAY } from "./json";

let patterns: string[] = ["timeout", "timed out", "connection refused", "throttl", "503"];

function handle(line: string): string {
  const request = parse(line);
  if (request == null) return '{"error":"not a JSON request"}';
  const call = request.getString("call");
  if (call == "init") {
    const config = request.get("config");
    if (config != null && config.kind == ARRAY) {
      for (let i = 0; i < config.items.length; i++) {
        const pair = config.items[i];
        const key = pair.items[0].text;
        if (key != "transient") return '{"error":' + quote("unknown config key '" + key + "' (known keys: transient)") + "}";
        const list: string[] = [];
        const parts = pair.items[1].text.split(",");
        for (let j = 0; j < parts.length; j++) {
          const p = parts[j].trim().toLowerCase();
          if (p.length > 0) list.push(p);
        }
        patterns = list;
      }
    }
    return '{"ok":true}';
  }
  const message = request.get("message");
  if (message == null) return '{"error":"no message"}';
  const failure = message.get("failure");
  let text = "";
  if (failure != null) {
    const errorText = failure.getString("error_text");
    const errorClass = failure.getString("error_class");
    if (errorText != null) text += errorText.toLowerCase() + "\n";
    if (errorClass != null) text += errorClass.toLowerCase();
  }
  const id = message.getString("id");
  for (let i = 0; i < patterns.length; i++) {
    if (text.includes(patterns[i])) {
      process.stderr.write("info: " + (id != null ? id : "?") + " -> replay\n");
      return '{"verdict":"replay","reason":' + quote("transient: " + patterns[i]) + "}";
    }
  }
  process.stderr.write("info: " + (id != null ? id : "?") + " -> skip\n");
  return '{"verdict":"skip","reason":"not a transient error"}';
}

serveLines(handle);
