//! Host names and host patterns (`acme.com`, `*.acme.com`): validation, and
//! the coverage and overlap rules that decide which tenant may serve a host.
//!
//! A wildcard stands for exactly one DNS label: `*.acme.com` covers
//! `api.acme.com` but neither `acme.com` nor `a.b.acme.com`. With one-label
//! wildcards, two patterns overlap exactly when they are equal or one is
//! `*.S` and the other a concrete name directly below `S`.

/// Whether `pattern` is a valid host or one-label wildcard: lowercase RFC 1123
/// labels, at most 253 characters, `*.` only as the first label.
pub fn is_valid_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && pattern.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The suffix a wildcard stands under (`*.acme.com` → `acme.com`), or `None`
/// for a concrete name.
pub fn wildcard_suffix(pattern: &str) -> Option<&str> {
    pattern.strip_prefix("*.")
}

/// The parent of a concrete name (`api.acme.com` → `acme.com`).
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, rest)| rest)
}

/// Whether domain pattern `domain` covers host pattern `host`: every name
/// `host` matches is matched by `domain`.
pub fn covers(domain: &str, host: &str) -> bool {
    if domain == host {
        return true;
    }
    match (wildcard_suffix(domain), wildcard_suffix(host)) {
        (Some(suffix), None) => parent(host) == Some(suffix),
        _ => false,
    }
}

/// Whether some name is matched by both patterns.
pub fn overlaps(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_patterns_are_lowercase_labels_with_an_optional_leading_wildcard() {
        for ok in [
            "acme.com",
            "*.acme.com",
            "a-1.b",
            "localhost",
            "xn--bcher-kva.example",
        ] {
            assert!(is_valid_pattern(ok), "{ok}");
        }
        for bad in [
            "", "*", "*.", "Acme.com", "a..b", "-a.com", "a-.com", "a.*.com", "**.a", "a_b.com",
            "a.com.",
        ] {
            assert!(!is_valid_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        assert!(covers("*.acme.com", "api.acme.com"));
        assert!(covers("*.acme.com", "*.acme.com"));
        assert!(!covers("*.acme.com", "acme.com"));
        assert!(!covers("*.acme.com", "a.b.acme.com"));
        assert!(!covers("*.acme.com", "*.b.acme.com"));
        assert!(!covers("api.acme.com", "*.acme.com"));
        assert!(covers("acme.com", "acme.com"));
    }

    #[test]
    fn overlap_is_symmetric() {
        assert!(overlaps("*.acme.com", "api.acme.com"));
        assert!(overlaps("api.acme.com", "*.acme.com"));
        assert!(!overlaps("*.acme.com", "*.b.acme.com"));
        assert!(!overlaps("acme.com", "*.acme.com"));
    }
}
