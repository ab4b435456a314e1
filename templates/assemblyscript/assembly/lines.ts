// The command protocol's loop: read stdin to its end and answer each complete line with `handle`'s result, one
// line on stdout per request, written at once (redrive waits for each answer before sending the next request).

export function serveLines(handle: (line: string) => string): void {
  let pending = new Uint8Array(0);
  const chunk = new ArrayBuffer(65536);
  while (true) {
    const n = process.stdin.read(chunk);
    if (n > 0) {
      const grown = new Uint8Array(pending.length + n);
      grown.set(pending);
      grown.set(Uint8Array.wrap(chunk, 0, n), pending.length);
      pending = grown;
    }
    let start = 0;
    for (let i = 0; i < pending.length; i++) {
      if (pending[i] != 0x0a) continue;
      const line = String.UTF8.decode(pending.slice(start, i).buffer);
      if (line.trim().length > 0) process.stdout.write(handle(line) + "\n");
      start = i + 1;
    }
    if (start > 0) pending = pending.slice(start);
    if (n <= 0) {
      const rest = String.UTF8.decode(pending.buffer);
      if (rest.trim().length > 0) process.stdout.write(handle(rest) + "\n");
      return;
    }
  }
}
