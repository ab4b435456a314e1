// A small JSON reader and string writer: enough for the redrive command protocol, with the whole grammar
// (objects, arrays, strings with every escape, numbers, true/false/null). AssemblyScript has no exceptions to
// catch, so a malformed document gives `null` instead of throwing.

export const NULL: i32 = 0;
export const BOOL: i32 = 1;
export const NUMBER: i32 = 2;
export const STRING: i32 = 3;
export const ARRAY: i32 = 4;
export const OBJECT: i32 = 5;

export class JsonValue {
  kind: i32 = NULL;
  text: string = ""; // STRING: the value; NUMBER and BOOL: the literal
  items: JsonValue[] = []; // ARRAY items, OBJECT values
  keys: string[] = []; // OBJECT keys, parallel to items

  /** The value of `key` in an object, or null. */
  get(key: string): JsonValue | null {
    if (this.kind != OBJECT) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }

  /** The string value of `key`, or null when absent, null or not a string. */
  getString(key: string): string | null {
    const value = this.get(key);
    if (value == null || value.kind != STRING) return null;
    return value.text;
  }
}

class Parser {
  pos: i32 = 0;
  failed: bool = false;
  constructor(public src: string) {}

  skipSpace(): void {
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }

  fail(): JsonValue {
    this.failed = true;
    return new JsonValue();
  }

  value(): JsonValue {
    this.skipSpace();
    if (this.pos >= this.src.length) return this.fail();
    const c = this.src.charCodeAt(this.pos);
    if (c == 0x7b) return this.object();
    if (c == 0x5b) return this.array();
    if (c == 0x22) {
      const v = new JsonValue();
      v.kind = STRING;
      v.text = this.string();
      return v;
    }
    if (this.src.startsWith("true", this.pos)) return this.literal(BOOL, "true");
    if (this.src.startsWith("false", this.pos)) return this.literal(BOOL, "false");
    if (this.src.startsWith("null", this.pos)) return this.literal(NULL, "null");
    return this.number();
  }

  literal(kind: i32, word: string): JsonValue {
    this.pos += word.length;
    const v = new JsonValue();
    v.kind = kind;
    v.text = word;
    return v;
  }

  number(): JsonValue {
    const start = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      const numeric = (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45;
      if (!numeric) break;
      this.pos++;
    }
    if (this.pos == start) return this.fail();
    const v = new JsonValue();
    v.kind = NUMBER;
    v.text = this.src.substring(start, this.pos);
    return v;
  }

  string(): string {
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 0x22) {
        out += this.src.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c == 0x5c) {
        out += this.src.substring(runStart, this.pos);
        this.pos++;
        if (this.pos >= this.src.length) break;
        const e = this.src.charCodeAt(this.pos);
        if (e == 0x75) {
          // \uXXXX: one UTF-16 code unit; surrogate pairs come as two escapes and join up in the string
          const hex = this.src.substring(this.pos + 1, this.pos + 5);
          const code = I32.parseInt(hex, 16);
          if (hex.length != 4 || isNaN<f64>(<f64>code)) break;
          out += String.fromCharCode(code);
          this.pos += 5;
        } else {
          if (e == 0x6e) out += "\n";
          else if (e == 0x74) out += "\t";
          else if (e == 0x72) out += "\r";
          else if (e == 0x62) out += "\b";
          else if (e == 0x66) out += "\f";
          else if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
          else break;
          this.pos++;
        }
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.failed = true;
    return out;
  }

  array(): JsonValue {
    this.pos++;
    const v = new JsonValue();
    v.kind = ARRAY;
    this.skipSpace();
    if (this.pos < this.src.length && this.src.charCodeAt(this.pos) == 0x5d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      v.items.push(this.value());
      this.skipSpace();
      if (this.pos >= this.src.length) return this.fail();
      const c = this.src.charCodeAt(this.pos++);
      if (c == 0x5d) return v;
      if (c != 0x2c) return this.fail();
    }
    return v;
  }

  object(): JsonValue {
    this.pos++;
    const v = new JsonValue();
    v.kind = OBJECT;
    this.skipSpace();
    if (this.pos < this.src.length && this.src.charCodeAt(this.pos) == 0x7d) {
      this.pos++;
      return v;
    }
    while (!this.failed) {
      this.skipSpace();
      if (this.pos >= this.src.length || this.src.charCodeAt(this.pos) != 0x22) return this.fail();
      const key = this.string();
      this.skipSpace();
      if (this.pos >= this.src.length || this.src.charCodeAt(this.pos++) != 0x3a) return this.fail();
      v.keys.push(key);
      v.items.push(this.value());
      this.skipSpace();
      if (this.pos >= this.src.length) return this.fail();
      const c = this.src.charCodeAt(this.pos++);
      if (c == 0x7d) return v;
      if (c != 0x2c) return this.fail();
    }
    return v;
  }
}

/** Parse one JSON document; null when it is not valid JSON. */
export function parse(src: string): JsonValue | null {
  const p = new Parser(src);
  const v = p.value();
  p.skipSpace();
  if (p.failed || p.pos != src.length) return null;
  return v;
}

/** `text` as a JSON string literal. */
export function quote(text: string): string {
  let out = '"';
  let runStart = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x22 || c == 0x5c || c < 0x20) {
      out += text.substring(runStart, i);
      if (c == 0x22) out += '\\"';
      else if (c == 0x5c) out += "\\\\";
      else if (c == 0x0a) out += "\\n";
      else out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
      runStart = i + 1;
    }
  }
  return out + text.substring(runStart) + '"';
}
