//! Durations as written in manifests (`500ms`, `10s`, `1m30s`, `2h`): the
//! same grammar the CRD schema's pattern admits, parsed to milliseconds.

/// Why a duration could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected digits with a unit (ms, s, m, h), e.g. 500ms or 1m30s")]
pub struct DurationError(pub String);

/// Parses a duration (the binaries' duration flags use this).
pub fn parse(text: &str) -> Result<std::time::Duration, DurationError> {
    parse_millis(text).map(std::time::Duration::from_millis)
}

/// Parses a duration into milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    let err = || DurationError(text.to_owned());
    if text.is_empty() {
        return Err(err());
    }
    let bytes = text.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 {
            return Err(err());
        }
        let value: u64 = text[start..i].parse().map_err(|_| err())?;
        let unit_ms = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match bytes.get(i) {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                _ => return Err(err()),
            };
            i += 1;
            unit
        };
        total = total.checked_add(value * unit_ms).ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_milliseconds() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("10s"), Ok(10_000));
        assert_eq!(parse_millis("1m30s"), Ok(90_000));
        assert_eq!(parse_millis("2h"), Ok(7_200_000));
        assert_eq!(parse_millis("0s"), Ok(0));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "", "10", "s", "1.5s", "10sec", "-1s", "1d", "1234567s", "ms",
        ] {
            assert!(parse_millis(bad).is_err(), "{bad:?}");
        }
    }
}
