//! Topic names: what a store accepts, checked before any file is touched.

use crate::error::{Error, Result};

/// Longest topic name, in bytes.
pub(crate) const TOPIC_NAME_MAX_BYTES: usize = 200;

/// Checks a topic (or consumer) name: 1 to 200 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, and not `.` or `..`. Such a name is a safe file name on every Linux
/// filesystem, and never collides with the store's own temporary names (they contain
/// `+`).
pub(crate) fn check_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidTopic {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("a topic name cannot be empty".into()));
    }
    if name.len() > TOPIC_NAME_MAX_BYTES {
        return Err(invalid(format!(
            "{} bytes long; at most {TOPIC_NAME_MAX_BYTES}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid("`.` and `..` name directories, not topics".into()));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "{c:?} at byte {at} is not allowed; use ASCII letters, digits, `.`, `_` and `-`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in [
            "orders",
            "agent.events",
            "jobs.42",
            "a",
            "A-b_c.9",
            ".hidden",
            "...",
        ] {
            assert!(check_topic_name(name).is_ok(), "{name}");
        }
        assert!(check_topic_name(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_a_reason() {
        for name in [
            "", ".", "..", "a/b", "a b", "é", "a+b", "a\0b", "../x", "x\n",
        ] {
            match check_topic_name(name) {
                Err(Error::InvalidTopic { name: got, reason }) => {
                    assert_eq!(got, name);
                    assert!(!reason.is_empty());
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(check_topic_name(&"x".repeat(201)).is_err());
    }
}
