//! MySQL values as text and bytes: a row of a failed-jobs table as the name/value pairs
//! `core::failed_jobs::envelope` reads.

use mysql_async::{Row, Value};

/// A value as text: numbers as written, times as `YYYY-MM-DD HH:MM:SS[.ffffff]` (the session is UTC),
/// bytes as UTF-8 (invalid sequences replaced). `None` for NULL.
pub(super) fn text(value: &Value) -> Option<String> {
    Some(match value {
        Value::NULL => return None,
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut t = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if *us > 0 {
                t.push_str(&format!(".{us:06}"));
            }
            t
        }
        Value::Time(negative, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *negative { "-" } else { "" };
            let mut t = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if *us > 0 {
                t.push_str(&format!(".{us:06}"));
            }
            t
        }
    })
}

/// A value as the message body: bytes as they are, anything else as its text, NULL as nothing.
pub(super) fn body(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.clone(),
        other => text(other).map(String::into_bytes).unwrap_or_default(),
    }
}

/// Every column of `row` by name, as text.
pub(super) fn named(row: &Row) -> Vec<(String, Option<String>)> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, column)| (column.name_str().into_owned(), row.as_ref(i).and_then(text)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_text() {
        assert_eq!(text(&Value::NULL), None);
        assert_eq!(
            text(&Value::UInt(18446744073709551615)).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            text(&Value::Date(2026, 11, 20, 8, 0, 5, 0)).unwrap(),
            "2026-11-20 08:00:05"
        );
        assert_eq!(
            text(&Value::Date(2026, 1, 2, 3, 4, 5, 60)).unwrap(),
            "2026-01-02 03:04:05.000060"
        );
        assert_eq!(text(&Value::Time(true, 1, 2, 3, 4, 0)).unwrap(), "-26:03:04");
        assert_eq!(body(&Value::Bytes(vec![0xff, 0])), vec![0xff, 0]);
        assert_eq!(body(&Value::Int(-3)), b"-3".to_vec());
    }
}
