//! The operator's `--where` predicate: trusted SQL, but checked to stay one predicate inside redrive's query.

/// Check that an operator's `--where` predicate stays one predicate inside the parentheses redrive puts it
/// in: balanced parentheses, no `;`, no comment that would hide the rest of the query (quotes, quoted
/// identifiers and dollar-quoted strings are skipped). It is still trusted SQL; this stops accidents, such as
/// a stray `)` that would widen the selection to the whole table.
pub(super) fn check_where(predicate: &str) -> Result<(), String> {
    let bytes = predicate.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let escapes = quote == b'\'' && i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err("has a quote that is not closed".into()),
                        Some(b'\\') if escapes => i += 2,
                        Some(&c) if c == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'$' => {
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map(|n| i + 1 + n);
                if let Some(end) = tag_end.filter(|&e| bytes[e] == b'$') {
                    let tag = &predicate[i..=end];
                    match predicate[end + 1..].find(tag) {
                        Some(close) => i = end + 1 + close + tag.len() - 1,
                        None => return Err(format!("has a dollar-quoted string {tag}...{tag} that is not closed")),
                    }
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open".into());
                }
            }
            b';' => return Err("has a `;`: it must be one predicate, not statements".into()),
            b'-' if bytes.get(i + 1) == Some(&b'-') => return Err("has a `--` comment".into()),
            b'/' if bytes.get(i + 1) == Some(&b'*') => return Err("has a `/*` comment".into()),
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("opens a parenthesis it does not close".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_where;

    #[test]
    fn a_where_predicate_stays_inside_its_parentheses() {
        for ok in [
            "queue = 'emails'",
            "(a = 1 OR b = 2) AND c <> 'x)y'",
            "payload LIKE '%--%' AND note = E'it\\'s (fine'",
            "\"odd)name\" = 1",
            "body = $q$ ); -- $q$",
            "a = 'it''s'",
        ] {
            assert_eq!(check_where(ok), Ok(()), "{ok}");
        }
        for bad in [
            "queue = 'emails') OR (true",
            "queue = 'emails' -- rest",
            "queue = 'emails' /* x */",
            "a = 1; DELETE FROM t",
            "(a = 1",
            "a = 'open",
            "body = $q$ open",
        ] {
            assert!(check_where(bad).is_err(), "{bad}");
        }
    }
}
