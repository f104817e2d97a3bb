//! RFC 3339 timestamps: strict parsing of `date-time` text into a UTC
//! [`Timestamp`], and formatting back into the `Z` form.
//!
//! This module owns the Gregorian calendar arithmetic of the ingest path, so no
//! date crate is needed. Parsing works on bytes, never allocates and never
//! panics, whatever the input. The written UTC offset is applied and then
//! dropped, so callers always get UTC and formatting always ends in `Z`.
//!
//! Leap seconds are kept, so [`Timestamp::subsec_nanos`] can reach
//! `1_999_999_999`. Callers that convert to a type without leap seconds must
//! handle values of `1_000_000_000` and above.

use std::fmt;
use std::str::FromStr;

const NANOS_PER_SECOND: u32 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Days in 400 Gregorian years, the period after which the calendar repeats.
const DAYS_PER_ERA: i64 = 146_097;

/// Days in a century that does not end in a leap year.
const DAYS_PER_COMMON_CENTURY: i64 = 36_524;

/// Days in four years that contain one leap day.
const DAYS_PER_LEAP_CYCLE: i64 = 1_461;

/// Day of the year on which each month starts, for a year counted from March 1.
///
/// Counting from March puts February, the only month of varying length, at the
/// end of the year, so a leap day never shifts the start of another month.
const MARCH_YEAR_MONTH_STARTS: [i64; 12] = [0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306, 337];

/// Days from 0000-03-01 to the Unix epoch, 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = days_since_year_zero(1970, 1, 1);

/// A UTC instant with nanosecond precision that keeps leap seconds.
///
/// A leap second `23:59:60.f` is stored as `23:59:59` with `1_000_000_000 + f`
/// nanoseconds. It therefore sorts after every instant of `23:59:59` and before
/// the next second, and formatting writes `:60` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    // The derived ordering compares fields in declaration order, so `secs`
    // must stay before `nanos`.
    /// Seconds since 1970-01-01T00:00:00Z, not counting leap seconds (Unix time).
    secs: i64,
    /// Nanoseconds into the second: below `1_000_000_000`, or below
    /// `2_000_000_000` during a leap second.
    nanos: u32,
}

/// Error from parsing an RFC 3339 `date-time`, naming the first invalid part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The input has no bytes.
    #[error("empty timestamp: expected an RFC 3339 date-time such as 2024-05-01T12:30:00Z")]
    Empty,

    /// The year is not exactly 4 ASCII digits.
    #[error("invalid year: expected 4 digits, 0000 to 9999")]
    InvalidYear,

    /// The month is not 2 ASCII digits from 01 to 12.
    #[error("invalid month: expected 2 digits, 01 to 12")]
    InvalidMonth,

    /// The day is not 2 ASCII digits.
    #[error("invalid day: expected 2 digits, 01 to 31")]
    InvalidDay,

    /// The day is 2 digits but does not exist in the given month of the given year.
    #[error("day {day:02} does not exist in {year:04}-{month:02}: expected 01 to {max_day:02}")]
    DayOutOfRange {
        /// Year as written.
        year: u32,
        /// Month as written, 1 to 12.
        month: u32,
        /// Day as written, 0 to 99.
        day: u32,
        /// Last day of that month in that year.
        max_day: u32,
    },

    /// The hour is not 2 ASCII digits from 00 to 23.
    #[error("invalid hour: expected 2 digits, 00 to 23")]
    InvalidHour,

    /// The minute is not 2 ASCII digits from 00 to 59.
    #[error("invalid minute: expected 2 digits, 00 to 59")]
    InvalidMinute,

    /// The second is not 2 ASCII digits from 00 to 59, or is 60 outside minute 59.
    #[error("invalid second: expected 2 digits, 00 to 59, or 60 for a leap second at minute 59")]
    InvalidSecond,

    /// A decimal point is not followed by a digit.
    #[error("invalid fraction: expected 1 or more digits after the decimal point")]
    InvalidFraction,

    /// The text ends before the UTC offset.
    #[error("missing UTC offset: end the timestamp with Z or ±hh:mm")]
    MissingOffset,

    /// The UTC offset is neither `Z` nor `±hh:mm` with hours 00 to 23 and minutes 00 to 59.
    #[error("invalid UTC offset: expected Z or ±hh:mm, with hours 00 to 23 and minutes 00 to 59")]
    InvalidOffset,

    /// A separator between date or time fields is missing or wrong.
    #[error("missing or invalid separator at byte {position}: expected {expected}")]
    InvalidSeparator {
        /// Byte index into the input.
        position: usize,
        /// The accepted separators and where they go, such as `'-' after the year`.
        expected: &'static str,
    },

    /// Bytes follow a complete UTC offset.
    #[error(
        "unexpected characters at byte {position}: end the timestamp right after the UTC offset"
    )]
    TrailingCharacters {
        /// Byte index of the first unexpected byte.
        position: usize,
    },
}

impl Timestamp {
    /// Parses an RFC 3339 `date-time`, such as `2024-05-01T12:30:00.25+02:00`,
    /// and converts it to UTC.
    ///
    /// See [`Timestamp::parse_rfc3339_bytes`] for the accepted syntax.
    ///
    /// # Errors
    ///
    /// Returns a [`TimestampError`] naming the first invalid part.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        Self::parse_rfc3339_bytes(text.as_bytes())
    }

    /// Parses an RFC 3339 `date-time` from raw bytes and converts it to UTC.
    ///
    /// The syntax is `YYYY-MM-DDThh:mm:ss`, an optional `.` with 1 or more
    /// digits, and an offset `Z` or `±hh:mm`. `T` and `Z` may be lowercase, and
    /// `-00:00` means UTC. Nothing may come before or after. Fraction digits
    /// past the ninth are checked and then dropped without rounding. Second 60
    /// is a leap second and is accepted only when the written minute is 59,
    /// without consulting a leap second table.
    ///
    /// # Errors
    ///
    /// Returns a [`TimestampError`] naming the first invalid part.
    pub fn parse_rfc3339_bytes(bytes: &[u8]) -> Result<Timestamp, TimestampError> {
        if bytes.is_empty() {
            return Err(TimestampError::Empty);
        }

        let year = parse_field(bytes, 0, 4, TimestampError::InvalidYear)?;
        expect_separator(bytes, 4, b"-", "'-' after the year")?;
        let month = parse_field(bytes, 5, 2, TimestampError::InvalidMonth)?;
        if !(1..=12).contains(&month) {
            return Err(TimestampError::InvalidMonth);
        }
        expect_separator(bytes, 7, b"-", "'-' after the month")?;
        let day = parse_field(bytes, 8, 2, TimestampError::InvalidDay)?;
        let max_day = days_in_month(year, month);
        if !(1..=max_day).contains(&day) {
            return Err(TimestampError::DayOutOfRange {
                year,
                month,
                day,
                max_day,
            });
        }

        expect_separator(bytes, 10, b"Tt", "'T' or 't' between date and time")?;
        let hour = parse_field(bytes, 11, 2, TimestampError::InvalidHour)?;
        if hour > 23 {
            return Err(TimestampError::InvalidHour);
        }
        expect_separator(bytes, 13, b":", "':' after the hour")?;
        let minute = parse_field(bytes, 14, 2, TimestampError::InvalidMinute)?;
        if minute > 59 {
            return Err(TimestampError::InvalidMinute);
        }
        expect_separator(bytes, 16, b":", "':' after the minute")?;
        let second = parse_field(bytes, 17, 2, TimestampError::InvalidSecond)?;

        // NOTE: the leap second check uses the written minute. With an offset
        // whose minutes are not 00, such as +05:30, a real leap second falls at
        // written minute 29 and is rejected.
        let is_leap_second = second == 60 && minute == 59;
        if second > 59 && !is_leap_second {
            return Err(TimestampError::InvalidSecond);
        }

        let (fraction_nanos, offset_start) = parse_fraction(bytes, 19)?;
        let (offset_seconds, end) = parse_offset(bytes, offset_start)?;
        if end != bytes.len() {
            return Err(TimestampError::TrailingCharacters { position: end });
        }

        // A leap second is stored as the second before it plus one extra second
        // of nanoseconds, which keeps `secs` on the Unix time line.
        let (second, extra_nanos) = if is_leap_second {
            (59, NANOS_PER_SECOND)
        } else {
            (second, 0)
        };
        let days = days_from_civil(i64::from(year), month, day);
        let second_of_day = i64::from(hour * 3_600 + minute * 60 + second);
        Ok(Timestamp {
            secs: days * SECONDS_PER_DAY + second_of_day - offset_seconds,
            nanos: fraction_nanos + extra_nanos,
        })
    }

    /// Creates a timestamp from Unix seconds and nanoseconds, or returns `None`
    /// if `nanos` is out of range.
    ///
    /// `nanos` must be below `1_000_000_000`, or below `2_000_000_000` for a leap
    /// second. A leap second follows a second that ends a minute, so it needs
    /// `secs` at second 59 of a minute. Every `secs` value is accepted.
    pub fn from_parts(secs: i64, nanos: u32) -> Option<Timestamp> {
        let is_valid =
            nanos < NANOS_PER_SECOND || (nanos < 2 * NANOS_PER_SECOND && secs.rem_euclid(60) == 59);
        is_valid.then_some(Timestamp { secs, nanos })
    }

    /// Returns the seconds since 1970-01-01T00:00:00Z, not counting leap seconds.
    ///
    /// During a leap second this is the second before it, `23:59:59`.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// Returns the nanoseconds into the current second.
    ///
    /// The value is below `1_000_000_000`, except during a leap second, when it
    /// is `1_000_000_000` plus the nanoseconds into the leap second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Appends the timestamp in UTC as `YYYY-MM-DDThh:mm:ss[.fraction]Z`.
    ///
    /// The fraction is left out when it is zero and otherwise written without
    /// trailing zeros, as in `.5` or `.123456789`. A leap second is written as
    /// second `60`.
    ///
    /// Years outside 0000 to 9999, which only offsets at the edges of that range
    /// or [`Timestamp::from_parts`] can produce, are written with a sign and at
    /// least 4 digits, as in `-0001-12-31T23:00:00Z` or `+10000-01-01T00:59:59Z`.
    /// RFC 3339 has no such years, so [`Timestamp::parse_rfc3339`] rejects that
    /// output.
    pub fn write_rfc3339(&self, out: &mut String) {
        // Writing into a String never fails, so the result can be ignored.
        let _ = self.write_to(out);
    }

    fn write_to<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        let days = self.secs.div_euclid(SECONDS_PER_DAY);
        let second_of_day = self.secs.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if (0..=9999).contains(&year) {
            write!(out, "{year:04}")?;
        } else {
            // The width counts the sign, so 5 gives at least 4 digits.
            write!(out, "{year:+05}")?;
        }

        let hour = second_of_day / 3_600;
        let minute = second_of_day / 60 % 60;
        let mut second = second_of_day % 60;
        if self.nanos >= NANOS_PER_SECOND {
            second += 1;
        }
        write!(
            out,
            "-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
        )?;

        let mut fraction = self.nanos % NANOS_PER_SECOND;
        if fraction != 0 {
            let mut width = 9;
            while fraction % 10 == 0 {
                fraction /= 10;
                width -= 1;
            }
            write!(out, ".{fraction:0width$}")?;
        }
        out.write_char('Z')
    }
}

impl fmt::Display for Timestamp {
    /// Writes the same text as [`Timestamp::write_rfc3339`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Parses with [`Timestamp::parse_rfc3339`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(text)
    }
}

/// Parses exactly `len` ASCII digits at `start` as a number.
///
/// A digit right after the field also fails with `error`, because it means the
/// field was written too long, as in a 5-digit year.
fn parse_field(
    bytes: &[u8],
    start: usize,
    len: usize,
    error: TimestampError,
) -> Result<u32, TimestampError> {
    let Some(digits) = bytes.get(start..start + len) else {
        return Err(error);
    };
    let mut value = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return Err(error);
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    if bytes.get(start + len).is_some_and(u8::is_ascii_digit) {
        return Err(error);
    }
    Ok(value)
}

fn expect_separator(
    bytes: &[u8],
    position: usize,
    accepted: &[u8],
    expected: &'static str,
) -> Result<(), TimestampError> {
    match bytes.get(position) {
        Some(byte) if accepted.contains(byte) => Ok(()),
        _ => Err(TimestampError::InvalidSeparator { position, expected }),
    }
}

/// Parses an optional `.` and fraction digits at `start`, returning the
/// nanoseconds and the index of the first byte after the fraction.
///
/// Only the first 9 digits count, and later digits are dropped without
/// rounding, so a timestamp never moves into the next second. The fraction ends
/// at the first non-digit, which must then start the UTC offset.
fn parse_fraction(bytes: &[u8], start: usize) -> Result<(u32, usize), TimestampError> {
    if bytes.get(start) != Some(&b'.') {
        return Ok((0, start));
    }

    let digits_start = start + 1;
    let mut end = digits_start;
    let mut nanos = 0;
    let mut scale = NANOS_PER_SECOND;
    while let Some(&byte) = bytes.get(end) {
        if !byte.is_ascii_digit() {
            break;
        }
        if scale > 1 {
            scale /= 10;
            nanos += u32::from(byte - b'0') * scale;
        }
        end += 1;
    }
    if end == digits_start {
        return Err(TimestampError::InvalidFraction);
    }
    Ok((nanos, end))
}

/// Parses the UTC offset at `start`, returning its value in seconds east of
/// UTC and the index of the first byte after it.
fn parse_offset(bytes: &[u8], start: usize) -> Result<(i64, usize), TimestampError> {
    let sign = match bytes.get(start) {
        None => return Err(TimestampError::MissingOffset),
        Some(b'Z' | b'z') => return Ok((0, start + 1)),
        Some(b'+') => 1,
        Some(b'-') => -1,
        Some(_) => return Err(TimestampError::InvalidOffset),
    };

    let hours = parse_field(bytes, start + 1, 2, TimestampError::InvalidOffset)?;
    if bytes.get(start + 3) != Some(&b':') {
        return Err(TimestampError::InvalidOffset);
    }
    let minutes = parse_field(bytes, start + 4, 2, TimestampError::InvalidOffset)?;
    if hours > 23 || minutes > 59 {
        return Err(TimestampError::InvalidOffset);
    }
    Ok((sign * i64::from(hours * 3_600 + minutes * 60), start + 6))
}

/// Gregorian leap year rule, applied to years before 1582 too (proleptic).
fn is_leap_year(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Converts a Gregorian date to days since 1970-01-01, negative before it.
///
/// Expects `month` in 1 to 12 and `day` in 1 to 31, which the parser checks
/// before calling.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    days_since_year_zero(year, month, day) - UNIX_EPOCH_DAYS
}

/// Counts days from 0000-03-01 to the given Gregorian date, negative before it.
///
/// Years are counted from March 1, so that each year ends with the leap day,
/// if it has one. A year `y` counted that way then has a leap day exactly when
/// the calendar year `y + 1` is a leap year.
const fn days_since_year_zero(year: i64, month: u32, day: u32) -> i64 {
    let march_year = if month <= 2 { year - 1 } else { year };
    let era = march_year.div_euclid(400);
    let year_of_era = march_year.rem_euclid(400);

    // Leap days in the whole years of this era before `year_of_era`. The leap
    // day at the end of each fourth year counts, except at the end of
    // years 99, 199 and 299 (calendar years 100, 200 and 300 of the era).
    let leap_days = year_of_era / 4 - year_of_era / 100;
    let month_index = ((month + 9) % 12) as usize;
    let day_of_year = MARCH_YEAR_MONTH_STARTS[month_index] + day as i64 - 1;

    era * DAYS_PER_ERA + year_of_era * 365 + leap_days + day_of_year
}

/// Converts days since 1970-01-01 to a Gregorian `(year, month, day)`.
///
/// Every `i64` day count that a `Timestamp` can hold (about ±1.1e14) converts
/// without overflow.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days_since_zero = days + UNIX_EPOCH_DAYS;
    let era = days_since_zero.div_euclid(DAYS_PER_ERA);
    let day_of_era = days_since_zero.rem_euclid(DAYS_PER_ERA);

    // An era contains 3 centuries of 36_524 days and a fourth of 36_525, because
    // only the fourth ends with a leap day (February 29 of a year divisible by
    // 400). Capping the quotient at 3 keeps that extra day in the fourth century.
    let century = (day_of_era / DAYS_PER_COMMON_CENTURY).min(3);
    let day_of_century = day_of_era - century * DAYS_PER_COMMON_CENTURY;

    // A 4-year cycle has 1_461 days, and its last day is the leap day that ends
    // its fourth year. Capping the quotient at 3 keeps that day in the fourth
    // year. A century's last cycle lacks the leap day, which needs no special case.
    let cycle = day_of_century / DAYS_PER_LEAP_CYCLE;
    let day_of_cycle = day_of_century % DAYS_PER_LEAP_CYCLE;
    let year_of_cycle = (day_of_cycle / 365).min(3);
    let day_of_year = day_of_cycle - year_of_cycle * 365;

    let mut month_index = 0;
    while month_index < 11 && MARCH_YEAR_MONTH_STARTS[month_index + 1] <= day_of_year {
        month_index += 1;
    }
    let day = day_of_year - MARCH_YEAR_MONTH_STARTS[month_index] + 1;

    // Months 0 to 9 of a March-based year are March to December, and 10 and 11
    // are January and February of the following calendar year.
    let march_year = era * 400 + century * 100 + cycle * 4 + year_of_cycle;
    let (year, month) = if month_index < 10 {
        (march_year, month_index + 3)
    } else {
        (march_year + 1, month_index - 9)
    };
    // Both values are at most 31, so the casts keep them exact.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Timestamp {
        match Timestamp::parse_rfc3339(text) {
            Ok(timestamp) => timestamp,
            Err(error) => panic!("{text:?} should parse, got: {error}"),
        }
    }

    fn parse_error(text: &str) -> TimestampError {
        match Timestamp::parse_rfc3339(text) {
            Ok(timestamp) => panic!("{text:?} should be rejected, got {timestamp:?}"),
            Err(error) => error,
        }
    }

    fn format(timestamp: Timestamp) -> String {
        let mut out = String::new();
        timestamp.write_rfc3339(&mut out);
        out
    }

    #[test]
    fn struct_fits_in_16_bytes() {
        assert!(std::mem::size_of::<Timestamp>() <= 16);
    }

    #[test]
    fn parses_uppercase_t_and_z() {
        let timestamp = parse("2024-05-01T12:30:45Z");
        assert_eq!(timestamp.unix_seconds(), 1_714_566_645);
        assert_eq!(timestamp.subsec_nanos(), 0);
    }

    #[test]
    fn parses_lowercase_t_and_z() {
        assert_eq!(parse("2024-05-01t12:30:45z"), parse("2024-05-01T12:30:45Z"));
        assert_eq!(parse("2024-05-01t12:30:45Z"), parse("2024-05-01T12:30:45Z"));
        assert_eq!(parse("2024-05-01T12:30:45z"), parse("2024-05-01T12:30:45Z"));
    }

    #[test]
    fn subtracts_positive_offset() {
        assert_eq!(
            parse("2024-05-01T14:30:45+02:00"),
            parse("2024-05-01T12:30:45Z")
        );
        assert_eq!(
            parse("2024-05-01T18:00:45+05:30"),
            parse("2024-05-01T12:30:45Z")
        );
    }

    #[test]
    fn adds_negative_offset() {
        assert_eq!(
            parse("2024-05-01T04:30:45-08:00"),
            parse("2024-05-01T12:30:45Z")
        );
        assert_eq!(
            parse("2024-04-30T23:30:45-13:00"),
            parse("2024-05-01T12:30:45Z")
        );
    }

    #[test]
    fn applies_maximum_offsets_across_days() {
        assert_eq!(
            parse("2024-05-01T00:00:00+23:59"),
            parse("2024-04-30T00:01:00Z")
        );
        assert_eq!(
            parse("2024-05-01T00:00:00-23:59"),
            parse("2024-05-01T23:59:00Z")
        );
    }

    #[test]
    fn treats_minus_zero_offset_as_utc() {
        assert_eq!(
            parse("2024-05-01T12:30:45-00:00"),
            parse("2024-05-01T12:30:45Z")
        );
        assert_eq!(
            parse("2024-05-01T12:30:45+00:00"),
            parse("2024-05-01T12:30:45Z")
        );
    }

    #[test]
    fn parses_fraction_of_each_length() {
        let cases = [
            ("2024-05-01T12:30:45Z", 0),
            ("2024-05-01T12:30:45.5Z", 500_000_000),
            ("2024-05-01T12:30:45.0Z", 0),
            ("2024-05-01T12:30:45.000000001Z", 1),
            ("2024-05-01T12:30:45.123456789Z", 123_456_789),
            ("2024-05-01T12:30:45.999999999+01:00", 999_999_999),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse(text).subsec_nanos(), nanos, "{text}");
        }
    }

    #[test]
    fn truncates_fraction_past_nine_digits() {
        let timestamp = parse("2024-05-01T12:30:45.123456789987Z");
        assert_eq!(timestamp.subsec_nanos(), 123_456_789);
        assert_eq!(timestamp.unix_seconds(), 1_714_566_645);

        let just_below_next_second = parse("2024-05-01T12:30:45.999999999999Z");
        assert_eq!(just_below_next_second.subsec_nanos(), 999_999_999);
        assert_eq!(just_below_next_second.unix_seconds(), 1_714_566_645);
    }

    #[test]
    fn accepts_long_fraction() {
        let text = format!("2024-05-01T12:30:45.{}Z", "1".repeat(10_000));
        assert_eq!(parse(&text).subsec_nanos(), 111_111_111);
    }

    #[test]
    fn rejects_fraction_without_digits() {
        assert_eq!(
            parse_error("2024-05-01T12:30:45.Z"),
            TimestampError::InvalidFraction
        );
        assert_eq!(
            parse_error("2024-05-01T12:30:45."),
            TimestampError::InvalidFraction
        );
        assert_eq!(
            parse_error("2024-05-01T12:30:45.+01:00"),
            TimestampError::InvalidFraction
        );
    }

    #[test]
    fn rejects_non_digit_inside_fraction() {
        assert_eq!(
            parse_error("2024-05-01T12:30:45.12a4Z"),
            TimestampError::InvalidOffset
        );
        assert_eq!(
            parse_error("2024-05-01T12:30:45.1234567891x3Z"),
            TimestampError::InvalidOffset
        );
        assert_eq!(
            parse_error("2024-05-01T12:30:45,5Z"),
            TimestampError::InvalidOffset
        );
    }

    #[test]
    fn accepts_leap_second_and_round_trips() {
        let leap = parse("2016-12-31T23:59:60Z");
        let last_regular_second = parse("2016-12-31T23:59:59Z");
        assert_eq!(leap.unix_seconds(), last_regular_second.unix_seconds());
        assert_eq!(leap.subsec_nanos(), 1_000_000_000);
        assert_eq!(format(leap), "2016-12-31T23:59:60Z");

        let leap_with_fraction = parse("2016-12-31T23:59:60.25Z");
        assert_eq!(leap_with_fraction.subsec_nanos(), 1_250_000_000);
        assert_eq!(format(leap_with_fraction), "2016-12-31T23:59:60.25Z");
    }

    #[test]
    fn accepts_leap_second_in_local_time() {
        let leap = parse("2016-12-31T15:59:60-08:00");
        assert_eq!(leap, parse("2016-12-31T23:59:60Z"));
        assert_eq!(format(leap), "2016-12-31T23:59:60Z");
    }

    #[test]
    fn accepts_leap_second_only_at_minute_59() {
        assert_eq!(parse("2015-06-30T23:59:60Z").subsec_nanos(), 1_000_000_000);
        assert_eq!(parse("2024-05-01T10:59:60Z").subsec_nanos(), 1_000_000_000);
        assert_eq!(
            parse_error("2016-12-31T23:58:60Z"),
            TimestampError::InvalidSecond
        );
        assert_eq!(
            parse_error("2016-12-31T23:00:60Z"),
            TimestampError::InvalidSecond
        );
    }

    #[test]
    fn checks_leap_second_against_written_minute() {
        // 05:29:60+05:30 is the real leap second 23:59:60Z, but its written
        // minute is 29. 05:59:60+05:30 is 00:29:60Z, but its written minute is 59.
        assert_eq!(
            parse_error("2016-12-31T05:29:60+05:30"),
            TimestampError::InvalidSecond
        );
        assert_eq!(
            format(parse("2017-01-01T05:59:60+05:30")),
            "2017-01-01T00:29:60Z"
        );
    }

    #[test]
    fn orders_leap_second_between_adjacent_seconds() {
        let before = parse("2016-12-31T23:59:59.999999999Z");
        let leap = parse("2016-12-31T23:59:60Z");
        let leap_end = parse("2016-12-31T23:59:60.999999999Z");
        let next_day = parse("2017-01-01T00:00:00Z");
        assert!(before < leap);
        assert!(leap < leap_end);
        assert!(leap_end < next_day);
    }

    #[test]
    fn accepts_february_29_in_leap_years() {
        for year in ["0000", "1600", "2000", "2024", "2400", "9996"] {
            let text = format!("{year}-02-29T00:00:00Z");
            assert_eq!(format(parse(&text)), text);
        }
    }

    #[test]
    fn rejects_february_29_in_common_years() {
        for year in [1900, 2023, 2100, 9999] {
            let text = format!("{year}-02-29T00:00:00Z");
            let expected = TimestampError::DayOutOfRange {
                year,
                month: 2,
                day: 29,
                max_day: 28,
            };
            assert_eq!(parse_error(&text), expected, "{text}");
        }
    }

    #[test]
    fn rejects_april_31() {
        let expected = TimestampError::DayOutOfRange {
            year: 2024,
            month: 4,
            day: 31,
            max_day: 30,
        };
        assert_eq!(parse_error("2024-04-31T00:00:00Z"), expected);
        assert_eq!(
            expected.to_string(),
            "day 31 does not exist in 2024-04: expected 01 to 30"
        );
    }

    #[test]
    fn rejects_day_zero_and_32() {
        assert!(matches!(
            parse_error("2024-01-00T00:00:00Z"),
            TimestampError::DayOutOfRange { day: 0, .. }
        ));
        assert!(matches!(
            parse_error("2024-01-32T00:00:00Z"),
            TimestampError::DayOutOfRange { day: 32, .. }
        ));
    }

    #[test]
    fn rejects_month_13_and_zero() {
        assert_eq!(
            parse_error("2024-13-01T00:00:00Z"),
            TimestampError::InvalidMonth
        );
        assert_eq!(
            parse_error("2024-00-01T00:00:00Z"),
            TimestampError::InvalidMonth
        );
    }

    #[test]
    fn rejects_hour_24() {
        assert_eq!(
            parse_error("2024-05-01T24:00:00Z"),
            TimestampError::InvalidHour
        );
    }

    #[test]
    fn rejects_minute_60() {
        assert_eq!(
            parse_error("2024-05-01T12:60:00Z"),
            TimestampError::InvalidMinute
        );
    }

    #[test]
    fn rejects_second_61() {
        assert_eq!(
            parse_error("2024-05-01T23:59:61Z"),
            TimestampError::InvalidSecond
        );
    }

    #[test]
    fn rejects_missing_offset() {
        assert_eq!(
            parse_error("2024-05-01T12:30:45"),
            TimestampError::MissingOffset
        );
        assert_eq!(
            parse_error("2024-05-01T12:30:45.5"),
            TimestampError::MissingOffset
        );
        assert_eq!(
            TimestampError::MissingOffset.to_string(),
            "missing UTC offset: end the timestamp with Z or ±hh:mm"
        );
    }

    #[test]
    fn rejects_malformed_offsets() {
        let cases = [
            "2024-05-01T12:30:45+0100",
            "2024-05-01T12:30:45+01",
            "2024-05-01T12:30:45+1:00",
            "2024-05-01T12:30:45+01:0",
            "2024-05-01T12:30:45+",
            "2024-05-01T12:30:45+24:00",
            "2024-05-01T12:30:45-01:60",
            "2024-05-01T12:30:45+01-00",
            "2024-05-01T12:30:45 UTC",
            "2024-05-01T12:30:45GMT",
        ];
        for text in cases {
            assert_eq!(parse_error(text), TimestampError::InvalidOffset, "{text}");
        }
    }

    #[test]
    fn rejects_five_digit_year() {
        assert_eq!(
            parse_error("10000-01-01T00:00:00Z"),
            TimestampError::InvalidYear
        );
    }

    #[test]
    fn rejects_short_or_signed_year() {
        assert_eq!(
            parse_error("999-01-01T00:00:00Z"),
            TimestampError::InvalidYear
        );
        assert_eq!(
            parse_error("+2024-01-01T00:00:00Z"),
            TimestampError::InvalidYear
        );
        assert_eq!(
            parse_error("-0001-01-01T00:00:00Z"),
            TimestampError::InvalidYear
        );
    }

    #[test]
    fn rejects_fields_with_wrong_digit_counts() {
        assert_eq!(
            parse_error("2024-5-01T00:00:00Z"),
            TimestampError::InvalidMonth
        );
        assert_eq!(
            parse_error("2024-005-01T00:00:00Z"),
            TimestampError::InvalidMonth
        );
        assert_eq!(
            parse_error("2024-05-1T00:00:00Z"),
            TimestampError::InvalidDay
        );
        assert_eq!(
            parse_error("2024-05-01T1:00:00Z"),
            TimestampError::InvalidHour
        );
        assert_eq!(
            parse_error("2024-05-01T01:0:00Z"),
            TimestampError::InvalidMinute
        );
        assert_eq!(
            parse_error("2024-05-01T01:00:000Z"),
            TimestampError::InvalidSecond
        );
    }

    #[test]
    fn rejects_space_separator() {
        let expected = TimestampError::InvalidSeparator {
            position: 10,
            expected: "'T' or 't' between date and time",
        };
        assert_eq!(parse_error("2024-05-01 12:30:45Z"), expected);
    }

    #[test]
    fn rejects_wrong_date_and_time_separators() {
        assert!(matches!(
            parse_error("2024/05/01T12:30:45Z"),
            TimestampError::InvalidSeparator { position: 4, .. }
        ));
        assert!(matches!(
            parse_error("2024-05/01T12:30:45Z"),
            TimestampError::InvalidSeparator { position: 7, .. }
        ));
        assert!(matches!(
            parse_error("2024-05-01T12.30:45Z"),
            TimestampError::InvalidSeparator { position: 13, .. }
        ));
        assert!(matches!(
            parse_error("2024-05-01T12:30.45Z"),
            TimestampError::InvalidSeparator { position: 16, .. }
        ));
    }

    #[test]
    fn rejects_trailing_garbage() {
        let cases = [
            ("2024-05-01T12:30:45Z ", 20),
            ("2024-05-01T12:30:45Zabc", 20),
            ("2024-05-01T12:30:45+01:00Z", 25),
            ("2024-05-01T12:30:45.5Z\n", 22),
        ];
        for (text, position) in cases {
            assert_eq!(
                parse_error(text),
                TimestampError::TrailingCharacters { position },
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_leading_whitespace() {
        assert_eq!(
            parse_error(" 2024-05-01T12:30:45Z"),
            TimestampError::InvalidYear
        );
    }

    #[test]
    fn rejects_empty_string() {
        assert_eq!(parse_error(""), TimestampError::Empty);
        assert_eq!(
            Timestamp::parse_rfc3339_bytes(b""),
            Err(TimestampError::Empty)
        );
    }

    #[test]
    fn rejects_non_ascii_input() {
        let cases = [
            "２０２４-05-01T12:30:45Z",
            "2024‐05-01T12:30:45Z",
            "2024-05-01T12:30:45Z\u{e9}",
            "2024-05-01T12:30:4\u{e9}Z",
            "2024-05-01T12:30:45.\u{663}Z",
            "\u{feff}2024-05-01T12:30:45Z",
        ];
        for text in cases {
            assert!(Timestamp::parse_rfc3339(text).is_err(), "{text:?}");
        }
        assert!(Timestamp::parse_rfc3339_bytes(b"2024-05-01T12:30:45\xff").is_err());
    }

    #[test]
    fn rejects_every_truncated_prefix() {
        let text = "2024-05-01T12:30:45.123+01:00";
        for end in 0..text.len() {
            let prefix = &text[..end];
            // Every prefix lacks at least part of the offset, so none is complete.
            assert!(Timestamp::parse_rfc3339(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn survives_mutated_bytes_without_panic() {
        // A fixed-seed xorshift generator keeps the test deterministic and bounded.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seed = b"2016-12-31T23:59:60.123456789123-23:59";
        let replacements = b"0123456789:-+.TtZz \xff\x00";
        for _ in 0..20_000 {
            let mut bytes = seed.to_vec();
            for _ in 0..=(next() % 3) {
                let position = (next() % bytes.len() as u64) as usize;
                let replacement = replacements[(next() % replacements.len() as u64) as usize];
                bytes[position] = replacement;
            }
            let cut = (next() % (bytes.len() as u64 + 1)) as usize;
            if let Ok(timestamp) = Timestamp::parse_rfc3339_bytes(&bytes[..cut]) {
                assert!(!format(timestamp).is_empty());
            }
        }
    }

    #[test]
    fn round_trips_utc_values() {
        let cases = [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "0000-01-01T00:00:00Z",
            "0000-03-01T00:00:00.5Z",
            "1600-02-29T12:00:00Z",
            "1900-03-01T00:00:00Z",
            "2000-02-29T23:59:59.1Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.000000001Z",
            "2024-05-01T12:30:45.123456789Z",
            "2024-05-01T12:30:45.12Z",
            "2038-01-19T03:14:08Z",
            "9999-12-31T23:59:59.999999999Z",
        ];
        for text in cases {
            let timestamp = parse(text);
            assert_eq!(format(timestamp), text);
            assert_eq!(timestamp.to_string(), text);
            assert_eq!(text.parse::<Timestamp>(), Ok(timestamp));
        }
    }

    #[test]
    fn formats_in_utc_without_trailing_zeros() {
        let cases = [
            ("2024-05-01T14:30:45.500+02:00", "2024-05-01T12:30:45.5Z"),
            ("2024-05-01t12:30:45.000z", "2024-05-01T12:30:45Z"),
            (
                "2024-05-01T12:30:45.000000100Z",
                "2024-05-01T12:30:45.0000001Z",
            ),
            ("2024-12-31T20:00:00-05:00", "2025-01-01T01:00:00Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(format(parse(input)), expected, "{input}");
        }
    }

    #[test]
    fn matches_known_unix_times() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-02T00:00:00Z", 86_400),
            ("1969-12-31T23:59:59Z", -1),
            ("2000-01-01T00:00:00Z", 946_684_800),
            ("2000-03-01T00:00:00Z", 951_868_800),
            ("2038-01-19T03:14:08Z", 2_147_483_648),
            ("0000-01-01T00:00:00Z", -62_167_219_200),
            ("9999-12-31T23:59:59Z", 253_402_300_799),
        ];
        for (text, unix_seconds) in cases {
            assert_eq!(parse(text).unix_seconds(), unix_seconds, "{text}");
        }
    }

    #[test]
    fn formats_years_outside_rfc3339_range() {
        let before_year_zero = parse("0000-01-01T00:00:00+01:00");
        assert_eq!(before_year_zero.unix_seconds(), -62_167_219_200 - 3_600);
        assert_eq!(format(before_year_zero), "-0001-12-31T23:00:00Z");

        let after_year_9999 = parse("9999-12-31T23:59:59-01:00");
        assert_eq!(format(after_year_9999), "+10000-01-01T00:59:59Z");
    }

    #[test]
    fn formats_extreme_seconds_without_panic() {
        let cases = [
            (i64::MIN, 0),
            (i64::MIN, 999_999_999),
            (i64::MAX, 999_999_999),
            (i64::MAX - 8, 1_999_999_999),
        ];
        for (secs, nanos) in cases {
            let timestamp = Timestamp::from_parts(secs, nanos);
            assert!(timestamp.is_some(), "{secs} {nanos}");
            if let Some(timestamp) = timestamp {
                let text = format(timestamp);
                assert!(text.starts_with(['+', '-']), "{text}");
                assert!(text.ends_with('Z'), "{text}");
            }
        }
    }

    #[test]
    fn from_parts_validates_nanos() {
        let leap = parse("2016-12-31T23:59:60.5Z");
        assert_eq!(
            Timestamp::from_parts(leap.unix_seconds(), leap.subsec_nanos()),
            Some(leap)
        );
        assert!(Timestamp::from_parts(0, 999_999_999).is_some());
        assert!(Timestamp::from_parts(-1, 1_000_000_000).is_some());
        assert!(Timestamp::from_parts(59, 1_999_999_999).is_some());
        assert_eq!(Timestamp::from_parts(0, 1_000_000_000), None);
        assert_eq!(Timestamp::from_parts(59, 2_000_000_000), None);
        assert_eq!(Timestamp::from_parts(59, u32::MAX), None);
    }

    #[test]
    fn days_from_civil_increases_by_one_each_day() {
        let mut expected = days_from_civil(0, 1, 1);
        assert_eq!(expected, -719_528);
        assert_eq!(days_from_civil(1970, 1, 1), 0);

        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let days = days_from_civil(i64::from(year), month, day);
                    assert_eq!(days, expected, "{year:04}-{month:02}-{day:02}");
                    expected += 1;
                }
            }
        }
        assert_eq!(expected - 1, days_from_civil(9999, 12, 31));
    }

    #[test]
    fn civil_from_days_inverts_every_day() {
        let mut days = days_from_civil(0, 1, 1);
        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(civil_from_days(days), (i64::from(year), month, day));
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn civil_from_days_handles_negative_years() {
        assert_eq!(civil_from_days(days_from_civil(-1, 12, 31)), (-1, 12, 31));
        assert_eq!(civil_from_days(days_from_civil(-400, 2, 29)), (-400, 2, 29));
        assert_eq!(
            days_from_civil(-400, 3, 1) - days_from_civil(-400, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(0, 1, 1) - days_from_civil(-400, 1, 1),
            DAYS_PER_ERA
        );
    }

    #[test]
    fn error_messages_are_lowercase_without_final_period() {
        let errors = [
            TimestampError::Empty,
            TimestampError::InvalidYear,
            TimestampError::InvalidMonth,
            TimestampError::InvalidDay,
            TimestampError::DayOutOfRange {
                year: 2023,
                month: 2,
                day: 29,
                max_day: 28,
            },
            TimestampError::InvalidHour,
            TimestampError::InvalidMinute,
            TimestampError::InvalidSecond,
            TimestampError::InvalidFraction,
            TimestampError::MissingOffset,
            TimestampError::InvalidOffset,
            TimestampError::InvalidSeparator {
                position: 10,
                expected: "'T' or 't' between date and time",
            },
            TimestampError::TrailingCharacters { position: 20 },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                message.starts_with(|c: char| c.is_ascii_lowercase()),
                "{message}"
            );
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
