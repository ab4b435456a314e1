//! What the user asks for: `path/to/module.wasm?key=value&redrive.timeout=250ms`.

use std::path::PathBuf;

use super::limits::{ModuleSettings, SettingError};

/// Query keys starting with this prefix configure the host (limits, policy) instead of the filter.
pub const HOST_KEY_PREFIX: &str = "redrive.";

/// One module of a chain, as given on the command line or in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSpec {
    /// Path to the `.wasm` file.
    pub path: PathBuf,
    /// Display name: `redrive.name`, else the file stem.
    pub name: String,
    /// Configuration passed to the filter's `init`, in the order given.
    pub config: Vec<(String, String)>,
    /// Host settings for this module.
    pub settings: ModuleSettings,
}

/// A module spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec has no path.
    #[error("empty filter spec; expected path/to/module.wasm[?key=value&...]")]
    Empty,
    /// A query pair has no `=`.
    #[error("filter `{spec}`: `{pair}` is not key=value")]
    NotKeyValue {
        /// The whole spec.
        spec: String,
        /// The offending pair.
        pair: String,
    },
    /// A `redrive.*` key is unknown or has a bad value.
    #[error("filter `{spec}`: {source}")]
    Setting {
        /// The whole spec.
        spec: String,
        /// What is wrong.
        #[source]
        source: SettingError,
    },
}

impl ModuleSpec {
    /// Parse `path[?k=v&k2=v2]`. Values are percent-decoded (`%26` for `&`, `+` for a space).
    /// `base` provides the settings that `redrive.*` keys override.
    pub fn parse(spec: &str, base: &ModuleSettings) -> Result<Self, SpecError> {
        let (path, query) = match spec.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (spec, None),
        };
        if path.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut out = ModuleSpec {
            path: PathBuf::from(path),
            name: default_name(path),
            config: Vec::new(),
            settings: base.clone(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if !pair.contains('=') {
                return Err(SpecError::NotKeyValue {
                    spec: spec.to_owned(),
                    pair: pair.to_owned(),
                });
            }
            let (key, value) = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .unwrap_or_default();
            out.apply(&key, value).map_err(|source| SpecError::Setting {
                spec: spec.to_owned(),
                source,
            })?;
        }
        Ok(out)
    }

    /// Apply one configuration pair: `redrive.*` keys change host settings, the rest go to the filter.
    pub fn apply(&mut self, key: &str, value: String) -> Result<(), SettingError> {
        match key.strip_prefix(HOST_KEY_PREFIX) {
            Some("name") => self.name = value,
            Some(setting) => self.settings.set(setting, &value)?,
            None => self.config.push((key.to_owned(), value)),
        }
        Ok(())
    }
}

fn default_name(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    file.strip_suffix(".wasm").unwrap_or(file).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::limits::InstancePolicy;
    use std::time::Duration;

    #[test]
    fn splits_filter_config_from_host_settings() {
        let spec = ModuleSpec::parse(
            "build/filters/route-by-error.wasm?transient=timeout,503&default=skip&redrive.timeout=250ms&redrive.instance=fresh&note=a+b%26c",
            &ModuleSettings::default(),
        )
        .unwrap();
        assert_eq!(spec.name, "route-by-error");
        assert_eq!(spec.path, PathBuf::from("build/filters/route-by-error.wasm"));
        assert_eq!(
            spec.config,
            vec![
                ("transient".into(), "timeout,503".into()),
                ("default".into(), "skip".into()),
                ("note".into(), "a b&c".into()),
            ]
        );
        assert_eq!(spec.settings.limits.timeout, Duration::from_millis(250));
        assert_eq!(spec.settings.policy, InstancePolicy::Fresh);
    }

    #[test]
    fn names_and_errors() {
        let s = ModuleSpec::parse("x.wasm?redrive.name=first", &ModuleSettings::default()).unwrap();
        assert_eq!(s.name, "first");
        let e = ModuleSpec::parse("x.wasm?flag", &ModuleSettings::default()).unwrap_err();
        assert!(e.to_string().contains("`flag` is not key=value"), "{e}");
        let e = ModuleSpec::parse("x.wasm?redrive.memroy=1", &ModuleSettings::default()).unwrap_err();
        assert!(e.to_string().contains("unknown setting"), "{e}");
        assert!(matches!(
            ModuleSpec::parse("", &ModuleSettings::default()),
            Err(SpecError::Empty)
        ));
    }
}
