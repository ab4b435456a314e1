"""route-by-error in Python: a redrive filter component (componentize-py), implementing the WIT world `filter`
of guest-sdk/wit/filter.wit. Same decisions and reasons as the Rust version in filters/route-by-error:

- a permanent pattern in the failure text (error text, error class, broker reason; lowercased) -> skip;
- else a transient pattern -> replay;
- no failure text at all -> the `default` verdict, reason "no failure context";
- no pattern matches -> the `default` verdict, reason "unclassified error".

Config: `transient`, `permanent` (comma-separated patterns replacing the defaults), `default` (replay, skip or
discard; skip when absent). Build: ./build.sh OUT.wasm
"""

from componentize_py_types import Err
from wit_world import WitWorld as _WitWorld
from wit_world.imports import host
from wit_world.imports.types import Decision, LogLevel, Message, Verdict

DEFAULT_TRANSIENT = [
    "timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
    "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
    "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock",
]
DEFAULT_PERMANENT = [
    "validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
    "not found", "404", "constraint violation",
]
KNOWN_KEYS = ("transient", "permanent", "default")
VERDICTS = {"replay": Verdict.REPLAY, "skip": Verdict.SKIP, "discard": Verdict.DISCARD}


def split_list(value: str) -> list[str]:
    """Comma-separated items, trimmed and lowercased, empty ones dropped (as the Rust SDK's get_list)."""
    return [item.strip().lower() for item in value.split(",") if item.strip()]


class Settings:
    """The configuration `init` read. Module-level: componentize-py creates a new `WitWorld` object for every
    call into the component, so state kept on `self` would be lost between `init` and `decide`."""

    transient = list(DEFAULT_TRANSIENT)
    permanent = list(DEFAULT_PERMANENT)
    default = Verdict.SKIP


class WitWorld(_WitWorld):
    """The filter's two exports."""

    def init(self, config: list[tuple[str, str]]) -> None:
        for key, _ in config:
            if key not in KNOWN_KEYS:
                raise Err(f"unknown config key '{key}' (known keys: transient, permanent, default)")
        for key, value in config:  # in order: the last value of a key wins
            if key == "transient":
                Settings.transient = split_list(value)
            elif key == "permanent":
                Settings.permanent = split_list(value)
            else:
                verdict = VERDICTS.get(value.strip().lower())
                if verdict is None:
                    raise Err(
                        f"config key 'default': invalid value '{value}' (expected one of replay, skip, discard)"
                    )
                Settings.default = verdict

    def decide(self, msg: Message) -> Decision:
        verdict, reason, kind = self.classify(msg)
        host.log(LogLevel.INFO, f"error class: {kind} -> {verdict.name.lower()}")
        return Decision(verdict=verdict, reason=reason, body=None, attribute_changes=[])

    def classify(self, msg: Message) -> tuple[Verdict, str, str]:
        failure = msg.failure
        texts = [t for t in (failure.error_text, failure.error_class, failure.reason) if t is not None]
        if all(not t.strip() for t in texts):
            return Settings.default, "no failure context", "no-context"
        haystack = "\n".join(t.lower() for t in texts)
        for pattern in Settings.permanent:
            if pattern in haystack:
                return Verdict.SKIP, f'permanent error: matched "{pattern}"', "permanent"
        for pattern in Settings.transient:
            if pattern in haystack:
                return Verdict.REPLAY, f'transient error: matched "{pattern}"', "transient"
        return Settings.default, "unclassified error", "unclassified"
