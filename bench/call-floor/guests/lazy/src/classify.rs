//! route-by-error's classification (`filters/route-by-error`, `RouteByError::classify`), on
//! borrowed strings: the same lowercasing, the same haystack, the same first-match order.
//! Kept apart so the bench can run it natively as well.

use memchr::memmem::Finder;

/// How a failure was classified; the pattern is the one that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A permanent pattern matched (checked first).
    Permanent(String),
    /// A transient pattern matched, and no permanent one.
    Transient(String),
    /// There is failure text, but no pattern matched.
    Unclassified,
    /// No failure text at all.
    NoContext,
}

/// Classifies error text, error class and reason against the patterns (already lowercased).
pub fn classify(texts: [Option<&str>; 3], permanent: &[String], transient: &[String]) -> Class {
    first_match(
        texts,
        |haystack, patterns: &[String]| {
            patterns
                .iter()
                .find(|pattern| haystack.contains(pattern.as_str()))
                .cloned()
        },
        permanent,
        transient,
    )
}

/// No context, else the first permanent match, else the first transient one, else unclassified; `find`
/// looks for a list's first pattern in the lowercased texts, joined by newlines.
fn first_match<P: ?Sized>(
    texts: [Option<&str>; 3],
    find: impl Fn(&str, &P) -> Option<String>,
    permanent: &P,
    transient: &P,
) -> Class {
    if texts.iter().all(Option::is_none) {
        return Class::NoContext;
    }
    let haystack = texts
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(pattern) = find(&haystack, permanent) {
        Class::Permanent(pattern)
    } else if let Some(pattern) = find(&haystack, transient) {
        Class::Transient(pattern)
    } else {
        Class::Unclassified
    }
}

/// [`classify`] with a searcher per pattern, built once (memchr's `memmem::Finder`) instead of
/// one per pattern and message (`str::contains`); the haystack is lowercased the same way.
pub fn classify_finders(
    texts: [Option<&str>; 3],
    permanent: &[Finder<'static>],
    transient: &[Finder<'static>],
) -> Class {
    first_match(
        texts,
        |haystack, finders: &[Finder<'static>]| {
            finders
                .iter()
                .find(|finder| finder.find(haystack.as_bytes()).is_some())
                .map(|finder| String::from_utf8_lossy(finder.needle()).into_owned())
        },
        permanent,
        transient,
    )
}

/// One searcher per pattern, for [`classify_finders`].
pub fn finders(patterns: &[String]) -> Vec<Finder<'static>> {
    patterns
        .iter()
        .map(|p| Finder::new(p.as_bytes()).into_owned())
        .collect()
}

/// The comma-separated list of a config value, lowercased (route-by-error's `transient` / `permanent`).
pub fn pattern_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_wins_then_transient_then_unclassified() {
        let permanent = pattern_list("Invalid, 404");
        let transient = pattern_list("timeout,503");
        let class = |texts| classify(texts, &permanent, &transient);
        assert_eq!(
            class([Some("Timeout"), None, Some("invalid")]),
            Class::Permanent("invalid".into())
        );
        assert_eq!(
            class([None, Some("ReadTimeout"), None]),
            Class::Transient("timeout".into())
        );
        assert_eq!(class([Some("disk full"), None, None]), Class::Unclassified);
        assert_eq!(class([None, None, None]), Class::NoContext);
        let (p, t) = (finders(&permanent), finders(&transient));
        for texts in [
            [Some("Timeout"), None, Some("invalid")],
            [None, Some("ReadTimeout"), None],
            [None, None, None],
        ] {
            assert_eq!(classify_finders(texts, &p, &t), class(texts));
        }
    }
}
