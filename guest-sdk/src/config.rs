//! The filter's configuration: [`Config`].

use std::fmt::Display;
use std::str::FromStr;

/// The key/value configuration given to [`Filter::init`](crate::Filter::init)
/// (from `module.wasm?key=value` or the run's config file).
///
/// Keys are matched exactly. When a key appears more than once, the last
/// value wins.
///
/// ```
/// use redrive_guest::Config;
///
/// let config = Config::from_pairs([("patterns", " a, b ,,c "), ("size", "10")]);
/// assert_eq!(config.get("size"), Some("10"));
/// assert_eq!(config.get_or("mode", "strict"), "strict");
/// assert_eq!(config.get_list("patterns"), Some(vec!["a".to_string(), "b".into(), "c".into()]));
/// assert_eq!(config.get_parsed::<u32>("size"), Ok(Some(10)));
/// assert_eq!(
///     config.get_parsed::<u32>("patterns").unwrap_err(),
///     "config key 'patterns': invalid value ' a, b ,,c ' (invalid digit found in string)"
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Wraps the key/value list the host passed to `init`.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// Builds a config from any pairs of string-like values (handy in tests):
    /// `Config::from_pairs([("default", "replay")])`.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Config::new(
            pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        )
    }

    /// All entries, in the order the host gave them (duplicates included).
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Iterates over `(key, value)` pairs, in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Number of entries (duplicates included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when there is no entry at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `true` when `key` is present (even with an empty value).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key` (the last one if it appears several times), as given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `key`, or `default` when the key is absent.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` split on commas, each item trimmed, empty items
    /// dropped; `None` when the key is absent. A present but empty value gives
    /// an empty list.
    pub fn get_list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(split_list)
    }

    /// Like [`get_list`](Self::get_list), with `default` (a list of items)
    /// when the key is absent.
    pub fn get_list_or(&self, key: &str, default: &[&str]) -> Vec<String> {
        self.get_list(key)
            .unwrap_or_else(|| default.iter().map(|item| item.to_string()).collect())
    }

    /// Parses the value of `key` with [`FromStr`]; `Ok(None)` when the key is
    /// absent. The error names the key and the bad value, ready to be returned
    /// from [`Filter::init`](crate::Filter::init):
    /// `config key 'size': invalid value 'abc' (invalid digit found in string)`.
    pub fn get_parsed<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|err| format!("config key '{key}': invalid value '{value}' ({err})")),
        }
    }

    /// Like [`get_parsed`](Self::get_parsed), with `default` when the key is absent.
    pub fn get_parsed_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.get_parsed(key)?.unwrap_or(default))
    }

    /// Fails with an error naming the first key that is not in `known` (and
    /// the known ones), so a typo in a config does not silently fall back to a
    /// default. Call it first thing in [`Filter::init`](crate::Filter::init).
    pub fn check_keys(&self, known: &[&str]) -> Result<(), String> {
        match self.iter().find(|(key, _)| !known.contains(key)) {
            None => Ok(()),
            Some((key, _)) if known.is_empty() => {
                Err(format!("unknown config key '{key}' (this filter takes no config)"))
            }
            Some((key, _)) => Err(format!("unknown config key '{key}' (known keys: {})", known.join(", "))),
        }
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Config::new(entries)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Config::from_pairs(pairs)
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    #[test]
    fn get_returns_last_value_for_duplicate_keys() {
        let config = Config::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(config.get("a"), Some("3"));
        assert_eq!(config.get("b"), Some("2"));
        assert_eq!(config.get("A"), None);
        assert_eq!(config.len(), 3);
        assert!(!config.is_empty());
        assert!(config.contains_key("b"));
        assert!(!config.contains_key("c"));
        assert_eq!(
            config.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2"), ("a", "3")]
        );
    }

    #[test]
    fn get_or_uses_default_only_when_absent() {
        let config = Config::from_pairs([("empty", "")]);
        assert_eq!(config.get_or("empty", "x"), "");
        assert_eq!(config.get_or("missing", "x"), "x");
        assert!(Config::default().is_empty());
    }

    #[test]
    fn get_list_trims_and_drops_empty_items() {
        let config = Config::from_pairs([
            ("list", " timeout , 503 service unavailable,, ,x "),
            ("empty", ""),
            ("one", "solo"),
        ]);
        assert_eq!(
            config.get_list("list"),
            Some(vec![
                "timeout".to_string(),
                "503 service unavailable".into(),
                "x".into()
            ])
        );
        assert_eq!(config.get_list("empty"), Some(vec![]));
        assert_eq!(config.get_list("one"), Some(vec!["solo".to_string()]));
        assert_eq!(config.get_list("missing"), None);
        assert_eq!(
            config.get_list_or("missing", &["a", "b"]),
            vec!["a".to_string(), "b".into()]
        );
        assert_eq!(config.get_list_or("one", &["a"]), vec!["solo".to_string()]);
    }

    #[test]
    fn get_parsed_reports_key_and_value() {
        let config = Config::from_pairs([("size", "1024"), ("lines", "many"), ("mode", "drop")]);
        assert_eq!(config.get_parsed::<usize>("size"), Ok(Some(1024)));
        assert_eq!(config.get_parsed::<usize>("missing"), Ok(None));
        assert_eq!(
            config.get_parsed::<u32>("lines"),
            Err("config key 'lines': invalid value 'many' (invalid digit found in string)".into())
        );
        assert_eq!(
            config.get_parsed::<Verdict>("mode"),
            Err("config key 'mode': invalid value 'drop' (expected one of replay, skip, discard)".into())
        );
        assert_eq!(config.get_parsed_or("missing", 7u8), Ok(7));
        assert_eq!(config.get_parsed_or("size", 7usize), Ok(1024));
        assert!(config.get_parsed_or("lines", 7u8).is_err());
    }

    #[test]
    fn check_keys_names_the_unknown_key() {
        let config = Config::from_pairs([("default", "skip"), ("defualt", "replay")]);
        assert_eq!(
            config.check_keys(&["default", "transient"]),
            Err("unknown config key 'defualt' (known keys: default, transient)".into())
        );
        assert_eq!(config.check_keys(&["default", "defualt"]), Ok(()));
        assert_eq!(
            config.check_keys(&[]),
            Err("unknown config key 'default' (this filter takes no config)".into())
        );
        assert_eq!(Config::default().check_keys(&[]), Ok(()));
    }

    #[test]
    fn conversions() {
        let from_vec = Config::from(vec![("k".to_string(), "v".to_string())]);
        let collected: Config = [("k", "v")].into_iter().collect();
        assert_eq!(from_vec, collected);
        assert_eq!(from_vec.entries(), &[("k".to_string(), "v".to_string())]);
    }
}
