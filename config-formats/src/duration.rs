//! Go-style durations ("90s", "1m30s", "2h"), as MetalLB's ConfigMap and resources write hold
//! and keepalive times.

/// Whole seconds in a Go duration string. Fractions of a second and units below one second
/// are refused: BGP timers are whole seconds.
pub fn parse_seconds(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty duration".into());
    }
    if text == "0" {
        return Ok(0);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?} is not a duration such as 90s or 1m30s"));
        }
        let value: u64 =
            rest[..digits].parse().map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600,
            "m" => 60,
            "s" => 1,
            "" => return Err(format!("{text:?} lacks a unit (h, m or s)")),
            unit => {
                return Err(format!(
                    "{text:?}: unit {unit:?} is not whole seconds (use h, m or s)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(value.saturating_mul(factor));
    }
    u32::try_from(total).map_err(|_| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations_in_whole_seconds() {
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("1m30s"), Ok(90));
        assert_eq!(parse_seconds("2h"), Ok(7200));
        assert_eq!(parse_seconds("0"), Ok(0));
        assert_eq!(parse_seconds("3s"), Ok(3));
    }

    #[test]
    fn refuses_what_is_not_whole_seconds() {
        assert!(parse_seconds("500ms").unwrap_err().contains("not whole seconds"));
        assert!(parse_seconds("90").unwrap_err().contains("lacks a unit"));
        assert!(parse_seconds("s").unwrap_err().contains("not a duration"));
        assert!(parse_seconds("").is_err());
    }
}
