//! The filters a template may use: `default`, `number`, `date` and `urlencode`.
//!
//! Their arguments are constants the whitelist has already checked, so at render time only the
//! value can be wrong, and that is a render error naming the filter, never a panic.

use std::fmt::Write as _;

use chrono::{
    format::{Item, StrftimeItems},
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Weekday,
};
use chrono_tz::Tz;
use minijinja::{Error, ErrorKind, Value};

/// Names of the filters templates may use.
pub(super) const NAMES: [&str; 4] = ["default", "number", "date", "urlencode"];

/// Most decimals `number(decimals)` rounds to.
pub(super) const MAX_DECIMALS: i64 = 6;

/// How `date` shows a point in time when the template gives no format.
const DATETIME_FORMAT: &str = "%Y/%m/%d %H:%M";

/// How `date` shows a plain date when the template gives no format.
const DATE_FORMAT: &str = "%Y/%m/%d";

/// Weekday names for `%J`, Sunday first: `12月1日(火)` is how Japanese SMS show dates.
const JAPANESE_WEEKDAYS: [&str; 7] = ["日", "月", "火", "水", "木", "金", "土"];

/// `default(fallback)`: the fallback when the value is missing, none or an empty string.
pub(super) fn default(value: &Value, fallback: Value) -> Value {
    if value.is_undefined() || value.is_none() || value.as_str() == Some("") {
        fallback
    } else {
        value.clone()
    }
}

/// Bytes `urlencode` leaves as they are: RFC 3986's unreserved characters.
const URL_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `urlencode`: the value percent-encoded as UTF-8, for a record's value inside a URL
/// (`?name={{LastName|urlencode}}`), so the whole URL stays one link and one short link.
pub(super) fn urlencode(value: String) -> String {
    percent_encoding::utf8_percent_encode(&value, URL_SAFE).to_string()
}

/// `number` / `number(decimals)`: a decimal number with thousands separators, `1,234,567.5`.
///
/// Works on the digits, not on a float, so `12345678901234567.89` keeps every digit; `decimals`
/// rounds half away from zero and pads with zeros.
pub(super) fn number(value: String, decimals: Option<u32>) -> Result<String, Error> {
    let text = value.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || unsigned.ends_with('.') {
        return Err(filter_error(
            "number",
            "needs a number such as 1234567.5 or -42",
        ));
    }
    let (int, frac) = match decimals {
        Some(places) => round(int, frac, places as usize),
        None => (int.to_string(), frac.to_string()),
    };
    let int = match int.trim_start_matches('0') {
        "" => "0",
        significant => significant,
    };
    let mut out = String::with_capacity(int.len() * 4 / 3 + frac.len() + 2);
    if negative && (int != "0" || frac.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    for (i, digit) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// `int.frac` rounded half away from zero to `places` decimals, as (integer, fraction) digits.
fn round(int: &str, frac: &str, places: usize) -> (String, String) {
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes().chain(std::iter::repeat(b'0')).take(places))
        .collect();
    if frac.as_bytes().get(places).is_some_and(|d| *d >= b'5') {
        let mut carry = true;
        for digit in digits.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                carry = false;
                break;
            }
        }
        if carry {
            digits.insert(0, b'1');
        }
    }
    let (int, frac) = digits.split_at(digits.len() - places);
    (
        String::from_utf8_lossy(int).into_owned(),
        String::from_utf8_lossy(frac).into_owned(),
    )
}

/// `date` / `date(format)` / `date(format, zone)`: an RFC 3339 time shown in `zone` (else
/// `default_zone`), or a plain `2026-12-01` date shown as it is. A local `2026-12-01 09:00`
/// (how CRM datetimes are shown, [`super::LOCAL_DATETIME_FORMAT`]) is a time in `default_zone`.
///
/// `format` is chrono's strftime plus `%J`, the Japanese weekday (日月火水木金土).
pub(super) fn date(
    value: &str,
    format: Option<&str>,
    zone: Option<&str>,
    default_zone: Tz,
) -> Result<String, Error> {
    let zone = match zone {
        Some(name) => parse_zone(name).map_err(|e| filter_error("date", &e))?,
        None => default_zone,
    };
    let text = value.trim();
    let mut out = String::new();
    let moment = parse_datetime(text).or_else(|| parse_local(text, default_zone));
    let written = if let Some(moment) = moment {
        let local = moment.with_timezone(&zone);
        let pattern = with_weekday(format.unwrap_or(DATETIME_FORMAT), local.weekday());
        let items = items(&pattern).map_err(|e| filter_error("date", &e))?;
        write!(out, "{}", local.format_with_items(items.iter()))
    } else if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let pattern = with_weekday(format.unwrap_or(DATE_FORMAT), day.weekday());
        let items = items(&pattern).map_err(|e| filter_error("date", &e))?;
        write!(out, "{}", day.format_with_items(items.iter()))
    } else {
        return Err(filter_error(
            "date",
            "needs a time such as 2026-12-01T00:00:00Z or a date such as 2026-12-01",
        ));
    };
    // chrono reports a field the value lacks (an hour of a plain date) as a fmt error; writing
    // with `write!` rather than `to_string` turns it into this error instead of a panic.
    written.map_err(|_| {
        filter_error(
            "date",
            "has a format that asks for a time, but the value is a date",
        )
    })?;
    Ok(out)
}

/// Whether `format` is a format `date` can use: chrono strftime plus `%J`.
pub(super) fn check_format(format: &str) -> Result<(), String> {
    items(&with_weekday(format, Weekday::Sun)).map(|_| ())
}

/// The time zone called `name`, e.g. `Asia/Tokyo`.
pub(super) fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse()
        .map_err(|_| format!("{name:?} is not a time zone such as \"Asia/Tokyo\""))
}

/// A local `2026-12-01 09:00` in `zone`; in a DST fold, the earlier of the two times.
fn parse_local(text: &str, zone: Tz) -> Option<DateTime<FixedOffset>> {
    let local = NaiveDateTime::parse_from_str(text, super::LOCAL_DATETIME_FORMAT).ok()?;
    let at = zone.from_local_datetime(&local).earliest()?;
    Some(at.with_timezone(&at.offset().fix()))
}

/// RFC 3339 as Salesforce and kintone send it, and Salesforce's REST form `…000+0000`.
pub fn parse_datetime(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
}

/// `format` with each `%J` replaced by the weekday's kanji (`%%J` stays a literal `%J`).
fn with_weekday(format: &str, weekday: Weekday) -> String {
    let mut out = String::with_capacity(format.len());
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('J') => {
                out.push_str(JAPANESE_WEEKDAYS[weekday.num_days_from_sunday() as usize]);
            }
            Some(next) => {
                out.push('%');
                out.push(next);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The parsed strftime `pattern`; chrono's `Display` fails on `Item::Error`, so it is refused here.
fn items(pattern: &str) -> Result<Vec<Item<'_>>, String> {
    let items: Vec<Item<'_>> = StrftimeItems::new(pattern).collect();
    if items.contains(&Item::Error) {
        return Err(format!("{pattern:?} is not a valid strftime format"));
    }
    Ok(items)
}

fn filter_error(filter: &str, detail: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("the `{filter}` filter {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo() -> Tz {
        chrono_tz::Asia::Tokyo
    }

    #[test]
    fn default_replaces_missing_none_and_empty_values_only() {
        let fallback = Value::from("お客");
        assert_eq!(default(&Value::UNDEFINED, fallback.clone()), fallback);
        assert_eq!(default(&Value::from(()), fallback.clone()), fallback);
        assert_eq!(default(&Value::from(""), fallback.clone()), fallback);
        assert_eq!(
            default(&Value::from("山田"), fallback.clone()),
            "山田".into()
        );
        assert_eq!(default(&Value::from("0"), fallback), "0".into());
    }

    #[test]
    fn urlencode_escapes_everything_but_unreserved_characters() {
        assert_eq!(
            urlencode("顧客 3&a=b/~x".into()),
            "%E9%A1%A7%E5%AE%A2%203%26a%3Db%2F~x"
        );
    }

    #[test]
    fn number_groups_thousands_and_keeps_the_fraction() {
        assert_eq!(number("1234567.5".into(), None).unwrap(), "1,234,567.5");
        assert_eq!(number("1234567".into(), None).unwrap(), "1,234,567");
        assert_eq!(number("123".into(), None).unwrap(), "123");
        assert_eq!(number("-1234".into(), None).unwrap(), "-1,234");
        assert_eq!(number("0012345".into(), None).unwrap(), "12,345");
        assert_eq!(
            number("12345678901234567.89".into(), None).unwrap(),
            "12,345,678,901,234,567.89"
        );
    }

    #[test]
    fn number_rounds_half_away_from_zero_to_the_decimals_given() {
        assert_eq!(number("1234567.5".into(), Some(0)).unwrap(), "1,234,568");
        assert_eq!(number("999.995".into(), Some(2)).unwrap(), "1,000.00");
        assert_eq!(number("2.5".into(), Some(2)).unwrap(), "2.50");
        assert_eq!(number("-2.45".into(), Some(1)).unwrap(), "-2.5");
        assert_eq!(number("-0.4".into(), Some(0)).unwrap(), "0");
        assert_eq!(number("0.04".into(), Some(1)).unwrap(), "0.0");
    }

    #[test]
    fn number_refuses_what_is_not_a_decimal_number() {
        for bad in [
            "", "abc", "1,234", "1.", ".5", "1e3", "--1", "1.2.3", "１２",
        ] {
            let err = number(bad.into(), None).unwrap_err();
            assert!(err.to_string().contains("`number` filter"), "{bad}: {err}");
        }
    }

    #[test]
    fn date_converts_utc_times_into_the_default_zone() {
        for utc in [
            "2026-12-01T00:00:00.000Z",
            "2026-12-01T00:00:00Z",
            "2026-12-01T00:00:00.000+0000",
            "2026-12-01T09:00:00+09:00",
        ] {
            assert_eq!(
                date(utc, None, None, tokyo()).unwrap(),
                "2026/12/01 09:00",
                "{utc}"
            );
        }
    }

    #[test]
    fn date_uses_the_format_and_zone_given() {
        let utc = "2026-12-01T00:00:00Z";
        assert_eq!(
            date(utc, Some("%Y年%-m月%-d日 %H:%M"), None, tokyo()).unwrap(),
            "2026年12月1日 09:00"
        );
        assert_eq!(
            date(
                utc,
                Some("%-m/%-d %H:%M"),
                Some("America/New_York"),
                tokyo()
            )
            .unwrap(),
            "11/30 19:00"
        );
        assert_eq!(
            date(utc, None, None, chrono_tz::UTC).unwrap(),
            "2026/12/01 00:00"
        );
    }

    #[test]
    fn date_reads_a_shown_local_time_in_the_default_zone() {
        assert_eq!(
            date("2026-12-24 01:00", Some("%m月%d日"), None, tokyo()).unwrap(),
            "12月24日"
        );
        assert_eq!(
            date("2026-12-24 10:00", Some("%H:%M"), Some("UTC"), tokyo()).unwrap(),
            "01:00"
        );
        assert_eq!(
            date("2026-12-24 10:00", None, None, chrono_tz::UTC).unwrap(),
            "2026/12/24 10:00"
        );
    }

    #[test]
    fn date_shows_plain_dates_without_conversion() {
        assert_eq!(
            date("2026-12-01", None, None, tokyo()).unwrap(),
            "2026/12/01"
        );
        assert_eq!(
            date(
                "2026-12-01",
                Some("%-m月%-d日"),
                Some("Pacific/Honolulu"),
                tokyo()
            )
            .unwrap(),
            "12月1日"
        );
    }

    #[test]
    fn percent_j_is_the_japanese_weekday() {
        assert_eq!(
            date("2026-12-01", Some("%-m月%-d日(%J)"), None, tokyo()).unwrap(),
            "12月1日(火)"
        );
        // 2026-11-30T20:00Z is already Tuesday in Japan.
        assert_eq!(
            date("2026-11-30T20:00:00Z", Some("%J %%J"), None, tokyo()).unwrap(),
            "火 %J"
        );
    }

    #[test]
    fn date_refuses_values_that_are_not_times_or_dates() {
        for bad in ["", "12月1日", "2026/12/01", "2026-13-01", "tomorrow"] {
            let err = date(bad, None, None, tokyo()).unwrap_err();
            assert!(err.to_string().contains("`date` filter"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_time_format_on_a_plain_date_is_an_error_not_a_panic() {
        let err = date("2026-12-01", Some("%H:%M"), None, tokyo()).unwrap_err();
        assert!(err.to_string().contains("asks for a time"), "{err}");
    }

    #[test]
    fn invalid_formats_and_zones_are_found_before_rendering() {
        assert!(check_format("%Y年%-m月%-d日(%J) %H:%M").is_ok());
        for bad in ["%", "%Q", "%-J", "%Y%"] {
            assert!(check_format(bad).is_err(), "{bad}");
        }
        assert!(parse_zone("Asia/Tokyo").is_ok());
        assert!(parse_zone("Asia/Osaka").is_err());
    }
}
