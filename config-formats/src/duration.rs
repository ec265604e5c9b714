//! Go-style durations ("90s", "1m30s", "3.5s", "2h"), as MetalLB's ConfigMap and resources write
//! hold and keepalive times, read as MetalLB reads them: Go's `time.ParseDuration`, then whole
//! seconds by truncation (`int(d.Seconds())`), since BGP timers are whole seconds.

/// Nanoseconds per unit Go's `time.ParseDuration` knows.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Whole seconds in a Go duration string, fractions truncated ("3.9s" is 3). A bare number is
/// read as seconds: MetalLB's own v0.1 example writes `hold-time: 120`, which Go would refuse.
pub fn parse_seconds(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty duration".into());
    }
    if let Ok(seconds) = text.parse::<u32>() {
        return Ok(seconds);
    }
    let bad = || format!("{text:?} is not a duration such as 90s, 1m30s or 3.5s");
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("{text:?} lacks a unit (h, m, s, ms, us or ns)"));
        }
        let per_unit =
            unit_nanos(unit).ok_or_else(|| format!("{text:?}: unknown unit {unit:?}"))?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let mut value =
            whole.checked_mul(per_unit).ok_or_else(|| format!("{text:?} is too long"))?;
        // The fraction's digits, scaled to the unit (Go keeps nanosecond precision).
        let mut scale = per_unit;
        for digit in fraction.chars().filter_map(|c| c.to_digit(10)) {
            scale /= 10;
            value += u128::from(digit) * scale;
        }
        nanos = nanos.checked_add(value).ok_or_else(|| format!("{text:?} is too long"))?;
    }
    u32::try_from(nanos / 1_000_000_000).map_err(|_| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations_truncated_to_whole_seconds_as_metallb_does() {
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("1m30s"), Ok(90));
        assert_eq!(parse_seconds("2h"), Ok(7200));
        assert_eq!(parse_seconds("0"), Ok(0));
        assert_eq!(parse_seconds("3s"), Ok(3));
        assert_eq!(parse_seconds("3.5s"), Ok(3));
        assert_eq!(parse_seconds("3.9s"), Ok(3));
        assert_eq!(parse_seconds("1.5m"), Ok(90));
        assert_eq!(parse_seconds(".5h"), Ok(1800));
        assert_eq!(parse_seconds("2500ms"), Ok(2));
        assert_eq!(parse_seconds("500ms"), Ok(0));
        assert_eq!(parse_seconds("120"), Ok(120), "MetalLB v0.1's example");
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        assert!(parse_seconds("90x").unwrap_err().contains("unknown unit"));
        assert!(parse_seconds("1.5").unwrap_err().contains("lacks a unit"));
        assert!(parse_seconds("s").unwrap_err().contains("not a duration"));
        assert!(parse_seconds("1..5s").unwrap_err().contains("not a duration"));
        assert!(parse_seconds("-3s").is_err());
        assert!(parse_seconds("").is_err());
    }
}
