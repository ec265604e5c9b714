//! BGP community values: standard (RFC 1997, "65000:100") and large (RFC 8092,
//! "large:1:2:3"), and resolving the aliases advertisements may use instead.

use std::collections::BTreeMap;

/// A community value to attach to a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    /// Two 16-bit halves.
    Standard(u16, u16),
    /// Global administrator, two local data parts.
    Large(u32, u32, u32),
}

impl Community {
    /// Parses "65000:100" or "large:1:2:3".
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(large) = text.strip_prefix("large:") {
            let parts: Vec<&str> = large.split(':').collect();
            let [a, b, c] = parts.as_slice() else {
                return Err(format!("large community {text:?} must be large:A:B:C"));
            };
            let part = |p: &str| {
                p.parse::<u32>()
                    .map_err(|_| format!("large community {text:?}: {p:?} is not a 32-bit number"))
            };
            return Ok(Self::Large(part(a)?, part(b)?, part(c)?));
        }
        let Some((high, low)) = text.split_once(':') else {
            return Err(format!("community {text:?} must be A:B (each 0-65535) or large:A:B:C"));
        };
        let half = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("community {text:?}: {p:?} is not a 16-bit number"))
        };
        Ok(Self::Standard(half(high)?, half(low)?))
    }

    /// Resolves `text` as a literal value or, failing that, as an alias name.
    pub fn resolve(text: &str, aliases: &BTreeMap<String, Community>) -> Result<Self, String> {
        if let Some(community) = aliases.get(text) {
            return Ok(*community);
        }
        if text.contains(':') {
            return Self::parse(text);
        }
        Err(format!("{text:?} is neither a community value nor a defined community alias"))
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standard(high, low) => write!(f, "{high}:{low}"),
            Self::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_standard_and_large() {
        assert_eq!(Community::parse("65000:100"), Ok(Community::Standard(65000, 100)));
        assert_eq!(
            Community::parse("large:4200000000:1:2"),
            Ok(Community::Large(4_200_000_000, 1, 2))
        );
        assert_eq!(Community::Large(1, 2, 3).to_string(), "1:2:3");
        assert_eq!(Community::Standard(1, 2).to_string(), "1:2");
    }

    #[test]
    fn rejects_out_of_range_and_malformed() {
        assert!(Community::parse("65536:1").unwrap_err().contains("16-bit"));
        assert!(Community::parse("1").unwrap_err().contains("must be A:B"));
        assert!(Community::parse("large:1:2").unwrap_err().contains("large:A:B:C"));
        assert!(Community::parse("large:1:2:x").unwrap_err().contains("32-bit"));
    }

    #[test]
    fn aliases_resolve_and_unknown_names_are_errors() {
        let aliases =
            BTreeMap::from([("no-advertise".to_string(), Community::Standard(65535, 65282))]);
        assert_eq!(
            Community::resolve("no-advertise", &aliases),
            Ok(Community::Standard(65535, 65282))
        );
        assert_eq!(Community::resolve("1:2", &aliases), Ok(Community::Standard(1, 2)));
        assert!(Community::resolve("missing", &aliases).unwrap_err().contains("community alias"));
    }
}
