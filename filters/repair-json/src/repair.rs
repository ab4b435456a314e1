//! Tokenizer-aware text repairs for almost-JSON, and the top-level key rename.
//!
//! Everything here works on the text, never by blind pattern replacement: a
//! small lexer splits the input into strings (double- or single-quoted, with
//! escapes), punctuation (`{ } [ ] , :`) and other runs (numbers, literals),
//! so commas, quotes and brackets inside strings are never touched. Working on
//! the text (rather than a parsed value) also keeps numbers and key order
//! exactly as they were.

/// One lexical token: a byte range of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A quoted string, including its quotes (`quote` is `"` or `'`).
    /// `terminated` is false when the input ends inside it.
    Str { quote: u8, terminated: bool },
    /// One of `{ } [ ] , :`.
    Punct(u8),
    /// Anything else up to the next whitespace, punctuation or quote.
    Other,
}

fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_punct(byte: u8) -> bool {
    matches!(byte, b'{' | b'}' | b'[' | b']' | b',' | b':')
}

/// Splits `text` into tokens (whitespace is skipped). All structural bytes are
/// ASCII, so every token boundary is a UTF-8 character boundary.
fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let start = i;
        if is_ws(byte) {
            i += 1;
            continue;
        }
        let kind = if byte == b'"' || byte == b'\'' {
            i += 1;
            let mut terminated = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b if b == byte => {
                        i += 1;
                        terminated = true;
                        break;
                    }
                    _ => i += 1,
                }
            }
            i = i.min(bytes.len());
            Kind::Str {
                quote: byte,
                terminated,
            }
        } else if is_punct(byte) {
            i += 1;
            Kind::Punct(byte)
        } else {
            while i < bytes.len() && !is_ws(bytes[i]) && !is_punct(bytes[i]) && bytes[i] != b'"' && bytes[i] != b'\'' {
                i += 1;
            }
            Kind::Other
        };
        tokens.push(Token { kind, start, end: i });
    }
    tokens
}

/// Replaces byte ranges (sorted, non-overlapping) of `text`.
fn apply_edits(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    for (start, end, replacement) in edits {
        out.push_str(&text[at..*start]);
        out.push_str(replacement);
        at = *end;
    }
    out.push_str(&text[at..]);
    out
}

/// Removes commas directly followed (whitespace aside) by `}` or `]`.
/// `None` when there is none.
pub fn remove_trailing_commas(text: &str) -> Option<String> {
    let tokens = lex(text);
    let edits: Vec<_> = tokens
        .windows(2)
        .filter(|pair| {
            pair[0].kind == Kind::Punct(b',') && matches!(pair[1].kind, Kind::Punct(b'}') | Kind::Punct(b']'))
        })
        .map(|pair| (pair[0].start, pair[0].end, String::new()))
        .collect();
    (!edits.is_empty()).then(|| apply_edits(text, &edits))
}

/// Converts a single-quoted string token (quotes included, possibly
/// unterminated) to a double-quoted one: `\'` becomes `'`, a bare `"` becomes
/// `\"`, other escapes are kept.
fn single_to_double(raw: &str, terminated: bool) -> String {
    let inner = &raw[1..if terminated { raw.len() - 1 } else { raw.len() }];
    let mut out = String::with_capacity(raw.len() + 4);
    out.push('"');
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\'') => out.push('\''),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '"' => out.push_str("\\\""),
            other => out.push(other),
        }
    }
    if terminated {
        out.push('"');
    }
    out
}

/// Turns single-quoted strings and keys into double-quoted ones.
/// `None` when there is none.
pub fn convert_single_quotes(text: &str) -> Option<String> {
    let edits: Vec<_> = lex(text)
        .into_iter()
        .filter_map(|token| match token.kind {
            Kind::Str {
                quote: b'\'',
                terminated,
            } => Some((
                token.start,
                token.end,
                single_to_double(&text[token.start..token.end], terminated),
            )),
            _ => None,
        })
        .collect();
    (!edits.is_empty()).then(|| apply_edits(text, &edits))
}

/// Closes an unterminated double-quoted string token: drops an incomplete
/// escape at its end (`\` or `\u12`), then adds the closing quote.
fn close_string(raw: &str) -> String {
    let mut body = raw.to_string();
    // An odd run of trailing backslashes ends in an incomplete escape.
    let backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        body.pop();
    } else if let Some(pos) = body.rfind("\\u") {
        let escaped_backslashes = body[..pos].bytes().rev().take_while(|&b| b == b'\\').count();
        let hex = &body[pos + 2..];
        if escaped_backslashes % 2 == 0 && hex.len() < 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            body.truncate(pos);
        }
    }
    body.push('"');
    body
}

/// Closes truncated input: closes an open string, drops a dangling `,`, a
/// `"key":` without a value or a lone key, then closes the open brackets and
/// braces in the right order. `None` when the input is not truncated (or its
/// brackets do not match, which is not a tail problem).
pub fn close_unterminated_tail(text: &str) -> Option<String> {
    let mut tokens = lex(text);
    let mut stack = Vec::new();
    for token in &tokens {
        match token.kind {
            Kind::Punct(open @ (b'{' | b'[')) => stack.push(open),
            Kind::Punct(close @ (b'}' | b']')) => {
                let open = if close == b'}' { b'{' } else { b'[' };
                if stack.pop() != Some(open) {
                    return None;
                }
            }
            _ => {}
        }
    }
    let open_string = matches!(
        tokens.last(),
        Some(Token {
            kind: Kind::Str { terminated: false, .. },
            ..
        })
    );
    if stack.is_empty() && !open_string {
        return None;
    }

    // Drop what cannot stand at the end of a container. Only `,`, `:` and
    // strings are dropped, never brackets, so `stack` stays right.
    loop {
        let n = tokens.len();
        match tokens.last().map(|t| t.kind) {
            Some(Kind::Punct(b',')) => {
                tokens.pop();
            }
            Some(Kind::Punct(b':')) => {
                tokens.pop();
                if matches!(tokens.last().map(|t| t.kind), Some(Kind::Str { .. })) {
                    tokens.pop();
                }
            }
            Some(Kind::Str { .. })
                if stack.last() == Some(&b'{') && n >= 2 && matches!(tokens[n - 2].kind, Kind::Punct(b'{' | b',')) =>
            {
                // A key with no colon and no value.
                tokens.pop();
            }
            _ => break,
        }
    }

    let mut out = String::with_capacity(text.len() + stack.len() + 1);
    match tokens.last() {
        None => {}
        Some(last) => {
            out.push_str(&text[..last.start]);
            let raw = &text[last.start..last.end];
            match last.kind {
                Kind::Str {
                    quote,
                    terminated: false,
                } => {
                    let raw = if quote == b'\'' {
                        single_to_double(raw, false)
                    } else {
                        raw.to_string()
                    };
                    out.push_str(&close_string(&raw));
                }
                _ => out.push_str(raw),
            }
        }
    }
    for open in stack.iter().rev() {
        out.push(if *open == b'{' { '}' } else { ']' });
    }
    Some(out)
}

/// Re-writes valid JSON without insignificant whitespace, keeping every token
/// (numbers, string escapes, key order) as it was.
pub fn compact(valid_json: &str) -> String {
    let mut out = String::with_capacity(valid_json.len());
    for token in lex(valid_json) {
        out.push_str(&valid_json[token.start..token.end]);
    }
    out
}

/// Renames top-level object keys of valid JSON (`renames` in order, each
/// applied only when `old` is a key and `new` is not already one), and when
/// something was renamed bumps a top-level `"schema_version": 1` to `2`.
///
/// Returns the compacted JSON and the applied renames, or `None` when nothing
/// was renamed.
pub fn rename_top_level_keys<'a>(
    valid_json: &str,
    renames: &'a [(String, String)],
) -> Option<(String, Vec<&'a (String, String)>)> {
    let tokens = lex(valid_json);
    if tokens.first().map(|t| t.kind) != Some(Kind::Punct(b'{')) {
        return None;
    }
    // Top-level keys: strings at depth 1 followed by a colon, with their token index.
    let mut keys: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Punct(b'{' | b'[') => depth += 1,
            Kind::Punct(b'}' | b']') => depth = depth.saturating_sub(1),
            Kind::Str { .. } if depth == 1 && tokens.get(index + 1).map(|t| t.kind) == Some(Kind::Punct(b':')) => {
                let raw = &valid_json[token.start..token.end];
                if let Ok(key) = serde_json::from_str::<String>(raw) {
                    keys.push((index, key));
                }
            }
            _ => {}
        }
    }

    let mut replaced: Vec<(usize, String)> = Vec::new();
    let mut applied = Vec::new();
    for rename in renames {
        let (old, new) = rename;
        if keys.iter().any(|(_, key)| key == new) {
            continue;
        }
        let mut hit = false;
        for (index, key) in keys.iter_mut().filter(|(_, key)| key == old) {
            let json_key = serde_json::to_string(new).unwrap_or_else(|_| format!("\"{new}\""));
            replaced.push((*index, json_key));
            *key = new.clone();
            hit = true;
        }
        if hit {
            applied.push(rename);
        }
    }
    if applied.is_empty() {
        return None;
    }
    for (index, key) in &keys {
        let value = tokens.get(index + 2);
        if key == "schema_version" && value.is_some_and(|v| v.kind == Kind::Other && &valid_json[v.start..v.end] == "1")
        {
            replaced.push((index + 2, "2".to_string()));
        }
    }

    let mut out = String::with_capacity(valid_json.len() + 16);
    for (index, token) in tokens.iter().enumerate() {
        match replaced.iter().find(|(i, _)| *i == index) {
            Some((_, replacement)) => out.push_str(replacement),
            None => out.push_str(&valid_json[token.start..token.end]),
        }
    }
    Some((out, applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexer_respects_strings_and_escapes() {
        let text = r#"{"a,]": 'b\'}', "c\"": [1, tru]}"#;
        let kinds: Vec<_> = lex(text).iter().map(|t| &text[t.start..t.end]).collect();
        assert_eq!(
            kinds,
            vec![
                "{", r#""a,]""#, ":", r"'b\'}'", ",", r#""c\"""#, ":", "[", "1", ",", "tru", "]", "}"
            ]
        );
        let open = lex(r#"["abc\"#);
        assert_eq!(
            open[1].kind,
            Kind::Str {
                quote: b'"',
                terminated: false
            }
        );
    }

    #[test]
    fn trailing_commas() {
        assert_eq!(
            remove_trailing_commas(r#"{"a": [1, 2, ], "b": {"c": 1,},}"#).as_deref(),
            Some(r#"{"a": [1, 2 ], "b": {"c": 1}}"#)
        );
        // Commas inside strings are data.
        assert_eq!(remove_trailing_commas(r#"{"a": ",}", "b": ",]"}"#), None);
        assert_eq!(remove_trailing_commas("[1, 2]"), None);
    }

    #[test]
    fn single_quotes() {
        assert_eq!(
            convert_single_quotes(r#"{'name': 'O\'Brien', 'say': 'he said "hi"', "ok": "it's"}"#).as_deref(),
            Some(r#"{"name": "O'Brien", "say": "he said \"hi\"", "ok": "it's"}"#)
        );
        assert_eq!(
            convert_single_quotes(r"{'tab': 'a\tb', 'ü': 'ß'}").as_deref(),
            Some(r#"{"tab": "a\tb", "ü": "ß"}"#)
        );
        assert_eq!(convert_single_quotes(r#"{"a": "it's fine"}"#), None);
    }

    #[test]
    fn unterminated_tail() {
        let close = |text: &str| close_unterminated_tail(text);
        assert_eq!(
            close(r#"{"a": [1, {"b": 2"#).as_deref(),
            Some(r#"{"a": [1, {"b": 2}]}"#)
        );
        assert_eq!(close(r#"{"a": "tex"#).as_deref(), Some(r#"{"a": "tex"}"#));
        assert_eq!(close(r#"{"a": 1, "b":"#).as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(close(r#"{"a": 1, "b": "#).as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(close(r#"{"a": 1, "b"#).as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(close(r#"{"a": 1,"#).as_deref(), Some(r#"{"a": 1}"#));
        assert_eq!(close(r#"["x", "y"#).as_deref(), Some(r#"["x", "y"]"#));
        assert_eq!(close("[1, 2,").as_deref(), Some("[1, 2]"));
        assert_eq!(close(r#"{"#).as_deref(), Some("{}"));
        assert_eq!(close(r#"{"a": "x\"#).as_deref(), Some(r#"{"a": "x"}"#));
        assert_eq!(close(r#"{"a": "x\\"#).as_deref(), Some(r#"{"a": "x\\"}"#));
        assert_eq!(close(r#"{"a": "x\u00"#).as_deref(), Some(r#"{"a": "x"}"#));
        assert_eq!(
            close(r#"{"a": "brackets [{,"#).as_deref(),
            Some(r#"{"a": "brackets [{,"}"#)
        );
        assert_eq!(close(r#"{"a": 1}"#), None);
        assert_eq!(close(r#"{"a": [1}"#), None);
    }

    #[test]
    fn compact_keeps_tokens() {
        assert_eq!(
            compact("{ \"a b\" : [ 1.50 , 1e3 ],\n \"c\": \"\\u00e9 x\" }"),
            r#"{"a b":[1.50,1e3],"c":"\u00e9 x"}"#
        );
    }

    #[test]
    fn rename_only_top_level_keys() {
        let renames = vec![("qty".to_string(), "quantity".to_string())];
        let (out, applied) =
            rename_top_level_keys(r#"{"qty": 2, "line": {"qty": 3}, "schema_version": 1}"#, &renames).unwrap();
        assert_eq!(out, r#"{"quantity":2,"line":{"qty":3},"schema_version":2}"#);
        assert_eq!(applied, vec![&renames[0]]);
        // Nothing to rename: no result, schema_version untouched.
        assert_eq!(
            rename_top_level_keys(r#"{"quantity": 2, "schema_version": 1}"#, &renames),
            None
        );
        // Not an object.
        assert_eq!(rename_top_level_keys(r#"[{"qty": 1}]"#, &renames), None);
        // The new name already exists: leave it alone rather than duplicate a key.
        assert_eq!(rename_top_level_keys(r#"{"qty": 1, "quantity": 2}"#, &renames), None);
        // schema_version other than 1 stays.
        let (out, _) = rename_top_level_keys(r#"{"schema_version": "1", "qty": 2}"#, &renames).unwrap();
        assert_eq!(out, r#"{"schema_version":"1","quantity":2}"#);
        // Escaped key spelling still matches.
        let (out, _) = rename_top_level_keys(r#"{"q\u0074y": 2}"#, &renames).unwrap();
        assert_eq!(out, r#"{"quantity":2}"#);
    }
}
