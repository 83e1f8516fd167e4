//! Timestamps at the two boundaries: RFC 3339 on the wire, fixed-width UTC text in SQL.
//!
//! Katib stores microseconds (`DATETIME(6)` / `TIMESTAMP(6)`) and answers in Go's
//! `time.RFC3339Nano` in UTC. We keep both: times are floored to the microsecond on the
//! way in (Go's `.999999` layout truncates the same way) and printed with trailing
//! fraction zeros trimmed on the way out.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

/// Why a wire timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not RFC 3339 (with an offset or `Z`).
    #[error(
        "{0:?} is not an RFC 3339 timestamp; use e.g. 2024-05-01T10:00:00Z or 2024-05-01T12:00:00.123456+02:00"
    )]
    NotRfc3339(String),
    /// RFC 3339, but outside what every backend stores and orders correctly.
    #[error("{0:?} is outside the supported range {MIN_TEXT} to {MAX_TEXT}")]
    OutOfRange(String),
}

const MIN_TEXT: &str = "0001-01-01T00:00:00Z";
const MAX_TEXT: &str = "9999-12-31T23:59:59.999999Z";

/// Parses an RFC 3339 timestamp with any fraction length and any offset, converts it to
/// UTC and floors it to the microsecond.
///
/// Accepts Katib's zero time `0001-01-01T00:00:00Z`. Fractions longer than nine digits are
/// cut to nanoseconds first, as Go's parser does.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
    let normalized = cut_fraction(text);
    let ts: Timestamp = normalized
        .parse()
        .map_err(|_| TimeError::NotRfc3339(text.to_owned()))?;
    let ts = floor_micros(ts);
    if !in_range(ts) {
        return Err(TimeError::OutOfRange(text.to_owned()));
    }
    Ok(ts)
}

/// Formats like Go's `t.UTC().Format(time.RFC3339Nano)`: `2024-05-01T10:00:00Z`,
/// `2024-05-01T10:00:00.5Z`.
pub fn format_rfc3339_nano(ts: Timestamp) -> String {
    // Digit by digit rather than through `format!`: a read of 1,000 rows formats 1,000.
    let dt = Offset::UTC.to_datetime(ts);
    let mut out = String::with_capacity(30);
    push_digits(&mut out, dt.year().unsigned_abs().into(), 4);
    for (sep, value) in [
        ('-', dt.month()),
        ('-', dt.day()),
        ('T', dt.hour()),
        (':', dt.minute()),
        (':', dt.second()),
    ] {
        out.push(sep);
        push_digits(&mut out, value.unsigned_abs().into(), 2);
    }
    let mut nanos = dt.subsec_nanosecond().unsigned_abs();
    if nanos != 0 {
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        out.push('.');
        push_digits(&mut out, nanos, width);
    }
    out.push('Z');
    out
}

/// Appends `value` as exactly `width` decimal digits (zero-padded; callers keep it in range).
fn push_digits(out: &mut String, value: u32, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10_u32.pow(k) % 10) as u8));
    }
}

/// Floors a timestamp to whole microseconds (towards the past, also before 1970).
pub fn floor_micros(ts: Timestamp) -> Timestamp {
    let micros = ts.as_nanosecond().div_euclid(1_000);
    i64::try_from(micros)
        .ok()
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        .unwrap_or(ts)
}

/// True when every backend can store `ts` and compare it correctly (years 0001..=9999 UTC).
pub fn in_range(ts: Timestamp) -> bool {
    let year = Offset::UTC.to_datetime(ts).year();
    (1..=9999).contains(&year)
}

/// The SQL text form: UTC `YYYY-MM-DD HH:MM:SS.ffffff`, always six fraction digits, so
/// text order is time order (SQLite) and MySQL/PostgreSQL cast it exactly.
pub(crate) fn to_sql_text(ts: Timestamp) -> String {
    let dt = Offset::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1_000
    )
}

/// Reads a time column back. Accepts our own text form (and any civil datetime, taken as
/// UTC) or an RFC 3339 timestamp with an offset; `None` for anything else.
pub(crate) fn from_sql_text(text: &str) -> Option<Timestamp> {
    if let Some(ts) = from_own_sql_text(text) {
        return Some(ts);
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return Offset::UTC.to_timestamp(dt).ok().map(floor_micros);
    }
    text.parse::<Timestamp>().ok().map(floor_micros)
}

/// Our own form, `YYYY-MM-DD HH:MM:SS.ffffff` exactly (what every backend gives back), read
/// by position: the common case of a read of many rows, several times cheaper than parsing.
fn from_own_sql_text(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() != 26
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
    {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0_i32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i32::from(c - b'0'))
        })
    };
    let small = |from: usize| number(from, from + 2).and_then(|v| i8::try_from(v).ok());
    let dt = DateTime::new(
        i16::try_from(number(0, 4)?).ok()?,
        small(5)?,
        small(8)?,
        small(11)?,
        small(14)?,
        small(17)?,
        number(20, 26)? * 1_000,
    )
    .ok()?;
    Offset::UTC.to_timestamp(dt).ok()
}

/// Cuts a fraction of seconds longer than nine digits to nine (jiff stops at nanoseconds;
/// Go ignores the extra digits).
fn cut_fraction(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let Some(dot) = bytes.iter().position(|&b| b == b'.' || b == b',') else {
        return text.into();
    };
    let digits = bytes[dot + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits <= 9 {
        return text.into();
    }
    // Only ASCII digits are removed, so both slices fall on char boundaries.
    let keep_end = dot + 1 + 9;
    let drop_end = dot + 1 + digits;
    format!("{}{}", &text[..keep_end], &text[drop_end..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("test timestamp")
    }

    #[test]
    fn parses_offsets_and_fractions_to_utc_micros() {
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789+02:00"),
            Ok(ts("2024-05-01T10:00:00.123456Z"))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00Z"),
            Ok(ts("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00.1234567890123Z"),
            Ok(ts("2024-05-01T10:00:00.123456Z"))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01t10:00:00.5z"),
            Ok(ts("2024-05-01T10:00:00.5Z"))
        );
    }

    #[test]
    fn accepts_katib_zero_time() {
        let zero = parse_rfc3339("0001-01-01T00:00:00Z").expect("zero time");
        assert_eq!(format_rfc3339_nano(zero), "0001-01-01T00:00:00Z");
        assert_eq!(to_sql_text(zero), "0001-01-01 00:00:00.000000");
    }

    #[test]
    fn rejects_non_rfc3339_and_out_of_range() {
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "1714557600",
            " 2024-05-01T10:00:00Z",
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                Err(TimeError::NotRfc3339(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_rfc3339("0001-01-01T00:30:00+01:00"),
            Err(TimeError::OutOfRange(_))
        ));
        let message = parse_rfc3339("yesterday").unwrap_err().to_string();
        assert!(message.contains("\"yesterday\""), "{message}");
        assert!(message.contains("RFC 3339"), "{message}");
    }

    #[test]
    fn formats_like_go_rfc3339_nano() {
        assert_eq!(
            format_rfc3339_nano(ts("2024-05-01T10:00:00Z")),
            "2024-05-01T10:00:00Z"
        );
        assert_eq!(
            format_rfc3339_nano(ts("2024-05-01T10:00:00.5Z")),
            "2024-05-01T10:00:00.5Z"
        );
        assert_eq!(
            format_rfc3339_nano(ts("2024-05-01T10:00:00.000001Z")),
            "2024-05-01T10:00:00.000001Z"
        );
    }

    #[test]
    fn floors_before_and_after_the_epoch() {
        assert_eq!(
            floor_micros(ts("1969-12-31T23:59:59.9999999Z")),
            ts("1969-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            floor_micros(ts("2024-05-01T10:00:00.0000019Z")),
            ts("2024-05-01T10:00:00.000001Z")
        );
    }

    #[test]
    fn sql_text_round_trips_and_sorts() {
        let a = ts("2024-05-01T09:59:59.999999Z");
        let b = ts("2024-05-01T10:00:00Z");
        assert_eq!(to_sql_text(b), "2024-05-01 10:00:00.000000");
        assert!(to_sql_text(a) < to_sql_text(b));
        assert_eq!(from_sql_text(&to_sql_text(a)), Some(a));
        assert_eq!(from_sql_text("2024-05-01T10:00:00Z"), Some(b));
        assert_eq!(from_sql_text("garbage"), None);
    }

    #[test]
    fn fast_paths_agree_with_the_general_ones() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Any microsecond of years 0001..=9999, some with whole seconds or short fractions.
            let span = 253_402_300_799_999_999_i64 + 62_135_596_800_000_000;
            let mut us = (x % span as u64) as i64 - 62_135_596_800_000_000;
            match x % 4 {
                0 => us -= us.rem_euclid(1_000_000),
                1 => us -= us.rem_euclid(1_000),
                _ => {}
            }
            let t = Timestamp::from_microsecond(us).unwrap();
            let text = to_sql_text(t);
            assert_eq!(from_own_sql_text(&text), Some(t), "{text}");
            let general = Offset::UTC
                .to_timestamp(text.parse::<DateTime>().unwrap())
                .unwrap();
            assert_eq!(general, t);
            let rfc = format_rfc3339_nano(t);
            assert_eq!(rfc.parse::<Timestamp>().unwrap(), t, "{rfc}");
            assert!(!rfc.contains(".") || !rfc.ends_with("0Z"), "{rfc}");
        }
        assert_eq!(from_own_sql_text("2024-13-01 00:00:00.000000"), None);
        assert_eq!(from_own_sql_text("2024-01-01 00:00:00.00000x"), None);
        assert_eq!(from_own_sql_text("2024-01-01T00:00:00.000000"), None);
        assert_eq!(
            from_sql_text("2024-01-01 00:00:00"),
            Some(ts("2024-01-01T00:00:00Z"))
        );
    }
}
