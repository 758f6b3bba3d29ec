//! Durations and byte sizes: parsed as the config writes them (`1h30m`,
//! `32MiB`), and formatted back the same way for messages.

use std::time::Duration;

/// The longest duration any key accepts.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration: one or more `<whole number><unit>` parts, units `ms`,
/// `s`, `m` and `h` (`10s`, `500ms`, `5m`, `1h30m`). A bare number is refused
/// because its unit would be a guess.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let hint = "write a duration such as `10s`, `500ms`, `5m` or `1h30m`";
    if text.is_empty() {
        return Err(format!("is empty: {hint}"));
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative, got `{text}`"));
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "a bare number has no unit: write `{text}s` for seconds (or `ms`, `m`, `h`)"
        ));
    }
    let bad = || format!("is not a duration: {hint}, got `{text}`");
    let mut total = Duration::ZERO;
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("is too long, got `{text}`"))?;
        rest = &rest[digits..];
        if rest.starts_with('.') {
            return Err(format!(
                "fractions are not supported: use a smaller unit (`1500ms` rather than `1.5s`), \
                 got `{text}`"
            ));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{number}` has no unit: {hint}, got `{text}`")),
            unit => {
                return Err(format!(
                    "unknown unit `{unit}`: the units are `ms`, `s`, `m` and `h`, got `{text}`"
                ));
            }
        };
        rest = &rest[unit_len..];
        let part = number
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("is too long, got `{text}`"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("is too long, got `{text}`"))?;
    }
    if total > MAX_DURATION {
        return Err(format!("is longer than 7 days, got `{text}`"));
    }
    Ok(total)
}

/// Parses a size in bytes: a whole number of bytes (`65536`), or a whole
/// number with a unit, binary (`KiB`, `MiB`, `GiB`) or decimal (`KB`, `MB`,
/// `GB`), in any case, a space allowed before it (`32MiB`, `64 KiB`, `1GB`).
pub(super) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let hint = "write a size such as `32MiB`, `512KiB` or `1GB`";
    if text.is_empty() {
        return Err(format!("is empty: {hint}"));
    }
    if text.starts_with('-') {
        return Err(format!("must not be negative, got `{text}`"));
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("is not a size: {hint}, got `{text}`"));
    }
    let number: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("is too large, got `{text}`"))?;
    let unit = text[digits..].trim_start();
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "fractions are not supported: use a smaller unit (`1536KiB` rather than `1.5MiB`), \
             got `{text}`"
        ));
    }
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit `{unit}`: the units are `KiB`, `MiB`, `GiB`, `KB`, `MB` and `GB` \
                 (or none, for bytes), got `{text}`"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("is too large, got `{text}`"))
}

/// Formats a size the way the config writes it: the largest binary unit that
/// divides it (`32MiB`, `64KiB`), else bytes.
pub(crate) fn format_byte_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// Formats a duration the way the config writes it (`1h30m`, `500ms`).
pub(super) fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{load, minimal_with};
    use super::*;

    #[test]
    fn durations_parse_in_every_documented_form() {
        let ok = [
            ("10s", 10_000),
            ("500ms", 500),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m30s", 90_000),
            ("2s500ms", 2_500),
            (" 10s ", 10_000),
            ("0s", 0),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_say_why() {
        let bad = [
            ("", "is empty"),
            ("-5s", "negative"),
            ("10", "bare number"),
            ("1.5s", "fractions"),
            ("10 s", "unknown unit"),
            ("10sec", "unknown unit"),
            ("5d", "unknown unit"),
            ("s", "not a duration"),
            ("ten seconds", "not a duration"),
            ("99999999999999999999h", "too long"),
            ("200h", "longer than 7 days"),
        ];
        for (text, needle) in bad {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(needle), "`{text}`: {err}");
        }
    }

    #[test]
    fn byte_sizes_parse_in_every_documented_form() {
        for (text, bytes) in [
            ("65536", 65_536),
            ("64KiB", 65_536),
            ("64 KiB", 65_536),
            ("32MiB", 32 << 20),
            ("32mib", 32 << 20),
            ("1GiB", 1 << 30),
            ("500KB", 500_000),
            ("32MB", 32_000_000),
            ("1GB", 1_000_000_000),
            (" 100000B ", 100_000),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
        }
        for (text, needle) in [
            ("", "is empty"),
            ("-1MiB", "negative"),
            ("1.5MiB", "fractions"),
            ("MiB", "not a size"),
            ("32 megabytes", "unknown unit"),
            ("99999999999999999999", "too large"),
            ("99999999999GiB", "too large"),
        ] {
            let err = parse_byte_size(text).expect_err(text);
            assert!(err.contains(needle), "`{text}`: {err}");
        }
        let yaml = minimal_with("equinix", "maxResponseSize: 8MiB");
        assert_eq!(
            load(&yaml).unwrap().settings.equinix.max_response_size,
            8 << 20
        );
        let yaml = minimal_with("equinix", "maxResponseSize: 131072");
        assert_eq!(
            load(&yaml).unwrap().settings.equinix.max_response_size,
            131_072
        );
    }

    #[test]
    fn byte_sizes_format_as_they_are_written() {
        for (bytes, text) in [(32 << 20, "32MiB"), (65_536, "64KiB"), (1 << 30, "1GiB")] {
            assert_eq!(format_byte_size(bytes), text);
            assert_eq!(parse_byte_size(text), Ok(bytes));
        }
        assert_eq!(format_byte_size(1_000_000), "1000000 bytes");
    }

    #[test]
    fn durations_format_as_they_are_written() {
        for text in ["10s", "500ms", "5m", "1h30m", "2s500ms", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
