//! Text shown to people: clipped to a width, whatever the characters.

/// Shorten `text` to at most `width` characters, marking the cut with `…`.
pub fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    text.chars().take(width.saturating_sub(1)).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clip_marks_the_cut_and_counts_characters() {
        assert_eq!(super::clip("héllo wörld", 6), "héllo…");
        assert_eq!(super::clip("short", 10), "short");
        assert_eq!(super::clip("ééé", 2), "é…");
    }
}
