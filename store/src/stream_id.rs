//! Redis stream entry ids (`<ms>-<seq>`), ordered as Redis orders them.

use std::fmt;
use std::str::FromStr;

/// A stream entry id. `StreamId::ZERO` is "before everything".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`, which precedes every entry.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Text that is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a stream id")]
pub struct BadStreamId(pub String);

impl FromStr for StreamId {
    type Err = BadStreamId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadStreamId(text.to_owned());
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_order_like_redis() {
        let a: StreamId = "1700000000000-0".parse().unwrap();
        let b: StreamId = "1700000000000-1".parse().unwrap();
        let c: StreamId = "1700000000001-0".parse().unwrap();
        assert!(StreamId::ZERO < a && a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-1");
        assert_eq!("5".parse::<StreamId>().unwrap(), StreamId { ms: 5, seq: 0 });
        assert!("x-1".parse::<StreamId>().is_err());
        assert!("1-".parse::<StreamId>().is_err());
    }
}
