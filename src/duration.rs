//! Durations as people write them in configuration and scenario files (`90s`, `15m`, `1h30m`, `500ms`).
//!
//! Shared by `muster serve`'s configuration and the simulator's scenarios, so neither depends on the other.
//! Parsing is `humantime`'s; the value is kept in whole milliseconds, the resolution the model works in.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};

/// A duration written by a person, stored in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub u64);

impl HumanDuration {
    /// As a `std::time::Duration`.
    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }

    /// Parses `90s`, `15m`, `2h`, `1h30m`, `500ms`, `1d` (any unit `humantime` knows). A bare number has no
    /// unit and is refused, as is anything finer than a millisecond.
    pub fn parse(s: &str) -> Result<HumanDuration, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid duration {s:?}: missing unit (e.g. {s}s, {s}m)"));
        }
        let d =
            humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e} (e.g. 90s, 15m, 1h30m)"))?;
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("invalid duration {s:?}: finer than a millisecond"));
        }
        u64::try_from(d.as_millis()).map(HumanDuration).map_err(|_| format!("duration {s:?} is too long"))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HumanDuration::parse(s)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(de::Error::custom)
    }
}

/// The shortest whole unit: `2h`, `15m`, else seconds (reports round to the second).
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0 / 1000;
        if s >= 3600 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s >= 60 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{}s", s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HumanDuration;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(HumanDuration::parse("90s").unwrap(), HumanDuration(90_000));
        assert_eq!(HumanDuration::parse("1h30m").unwrap(), HumanDuration(5_400_000));
        assert_eq!(HumanDuration::parse("1h 30m").unwrap(), HumanDuration(5_400_000));
        assert_eq!(HumanDuration::parse("250ms").unwrap(), HumanDuration(250));
        assert_eq!(HumanDuration::parse(" 2d ").unwrap(), HumanDuration(172_800_000));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "90", "s", "5 parsecs", "-1s", "10us", "99999999999999999999999h"] {
            let e = HumanDuration::parse(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_bare_number_asks_for_a_unit() {
        assert!(HumanDuration::parse("10").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn displays_the_shortest_whole_unit() {
        assert_eq!(HumanDuration(7_200_000).to_string(), "2h");
        assert_eq!(HumanDuration(900_000).to_string(), "15m");
        assert_eq!(HumanDuration(90_000).to_string(), "90s");
    }
}
