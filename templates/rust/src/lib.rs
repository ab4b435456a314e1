//! {{name}}: a redrive filter. It replays messages whose recorded error looks transient (a timeout, a refused
//! connection, throttling) and skips the others, so they stay in the dead-letter queue.
//!
//! Config: `transient` — comma-separated patterns replacing the default list (matched case-insensitively in
//! the error text and class).

use redrive_guest::{Config, Decision, Filter, Message, log};

const DEFAULT_TRANSIENT: &[&str] = &["timeout", "timed out", "connection refused", "throttl", "503"];

/// The filter's state, built once by `init` from the configuration.
pub struct Transient {
    patterns: Vec<String>,
}

impl Filter for Transient {
    fn init(config: &Config) -> Result<Self, String> {
        // Refuse unknown keys, so a typo does not silently fall back to a default.
        config.check_keys(&["transient"])?;
        let patterns = config.get_list_or("transient", DEFAULT_TRANSIENT);
        Ok(Transient {
            patterns: patterns.into_iter().map(|p| p.to_lowercase()).collect(),
        })
    }

    fn decide(&mut self, msg: &Message) -> Result<Decision, String> {
        let text = [&msg.failure.error_text, &msg.failure.error_class]
            .into_iter()
            .flatten()
            .map(|t| t.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        let decision = match self.patterns.iter().find(|p| text.contains(p.as_str())) {
            Some(pattern) => Decision::replay(format!("transient: {pattern}")),
            None => Decision::skip("not a transient error"),
        };
        log::info(format!("{} -> {}", msg.id, decision.verdict));
        Ok(decision)
    }
}

redrive_guest::export_filter!(Transient);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_decisions_match() {
        // Runs the filter natively on the same files `redrive filter test` uses.
        let config = Config::from_pairs([] as [(&str, &str); 0]);
        redrive_guest::testing::assert_examples::<Transient>(&config, "sample/input.jsonl", "sample/expected.jsonl");
    }
}
