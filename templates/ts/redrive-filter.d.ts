// Types of the WIT world `filter` (guest-sdk/wit/filter.wit) as componentize-js presents it to JavaScript:
// camelCase fields, `undefined` for an absent option, strings for enums, Uint8Array for list<u8>,
// `{ tag, val }` for variants. Written by hand for redrive:filter@0.1.0.

declare module "redrive:filter/host@0.1.0" {
  export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";
  /** Write a line to this message's audit record. */
  export function log(level: LogLevel, text: string): void;
}

declare namespace Redrive {
  interface Origin {
    system: string;
    dlq: string;
    originalQueue?: string;
  }
  interface FailureInfo {
    reason?: string;
    errorText?: string;
    errorClass?: string;
    receiveCount?: number;
    firstFailedAtMs?: bigint;
    lastFailedAtMs?: bigint;
  }
  interface Message {
    id: string;
    body: Uint8Array;
    attributes: [string, string][];
    origin: Origin;
    failure: FailureInfo;
    replayCount: number;
  }
  type Verdict = "replay" | "skip" | "discard";
  type AttributeChange = { tag: "set"; val: [string, string] } | { tag: "remove"; val: string };
  interface Decision {
    verdict: Verdict;
    reason: string;
    body?: Uint8Array;
    attributeChanges: AttributeChange[];
  }
}
