//! One module per command; each exposes `run(args) -> Result<exit code>`.

pub mod filter_new;
pub mod filter_test;
pub mod run;

/// Shorten `text` to at most `width` characters, marking the cut with `…`.
pub(crate) fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    text.chars().take(width.saturating_sub(1)).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(super::clip("héllo wörld", 6), "héllo…");
        assert_eq!(super::clip("short", 10), "short");
    }
}
