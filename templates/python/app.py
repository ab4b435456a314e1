"""{{name}}: a redrive filter in Python (a WebAssembly component built with componentize-py). It replays dead
letters whose recorded error looks transient (a timeout, a refused connection, throttling) and skips the others.

The contract is the WIT world `filter` in wit/filter.wit: `init` receives the configuration, `decide` one message.
Config: transient — comma-separated patterns replacing the default list ({{name}}.wasm?transient=timeout,503).
"""

from componentize_py_types import Err
from wit_world import WitWorld as _WitWorld
from wit_world.imports import host
from wit_world.imports.types import Decision, LogLevel, Message, Verdict


class Settings:
    """Module-level state: componentize-py creates a new WitWorld object for every call, so keep nothing on self."""

    patterns = ["timeout", "timed out", "connection refused", "throttl", "503"]


class WitWorld(_WitWorld):
    def init(self, config: list[tuple[str, str]]) -> None:
        for key, value in config:
            if key != "transient":
                raise Err(f"unknown config key '{key}' (known keys: transient)")
            Settings.patterns = [p.strip().lower() for p in value.split(",") if p.strip()]

    def decide(self, msg: Message) -> Decision:
        text = "\n".join(t.lower() for t in (msg.failure.error_text, msg.failure.error_class) if t is not None)
        for pattern in Settings.patterns:
            if pattern in text:
                host.log(LogLevel.INFO, f"{msg.id} -> replay")
                return Decision(verdict=Verdict.REPLAY, reason=f"transient: {pattern}", body=None, attribute_changes=[])
        host.log(LogLevel.INFO, f"{msg.id} -> skip")
        return Decision(verdict=Verdict.SKIP, reason="not a transient error", body=None, attribute_changes=[])
