//! A span of whole days in a time zone, as `from`/`to` dates name it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Most days one usage request covers.
pub const MAX_USAGE_DAYS: i64 = 366;
/// Most days one delivery report covers.
pub const MAX_REPORT_DAYS: i64 = 92;

/// Days `from` to `to`, both included, in `tz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayRange {
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
    pub to: NaiveDate,
    /// The zone the days are in.
    pub tz: Tz,
}

/// A query parameter that names no day range, with the parameter at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct RangeError {
    /// `from`, `to` or `tz`.
    pub field: &'static str,
    /// What is wrong.
    pub detail: String,
}

fn error(field: &'static str, detail: impl Into<String>) -> RangeError {
    RangeError {
        field,
        detail: detail.into(),
    }
}

impl DayRange {
    /// The range the parameters name: `tz` defaults to Asia/Tokyo, `from` to the first day of
    /// the month and `to` to today, both in `tz`, at most `max_days` long.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        tz: Option<&str>,
        now: DateTime<Utc>,
        max_days: i64,
    ) -> Result<Self, RangeError> {
        let tz: Tz = match tz {
            None => chrono_tz::Asia::Tokyo,
            Some(name) => name.parse().map_err(|_| {
                error(
                    "tz",
                    format!("{name:?} is not an IANA time zone such as Asia/Tokyo or UTC"),
                )
            })?,
        };
        let today = now.with_timezone(&tz).date_naive();
        let date = |field: &'static str, text: Option<&str>| {
            text.map(|t| {
                NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .filter(|d| (2000..=2199).contains(&d.year()))
                    .ok_or_else(|| {
                        error(
                            field,
                            format!("`{field}` must be a date YYYY-MM-DD between 2000 and 2199"),
                        )
                    })
            })
            .transpose()
        };
        let to = date("to", to)?.unwrap_or(today);
        let from = date("from", from)?.unwrap_or_else(|| to.with_day0(0).unwrap_or(to));
        if from > to {
            return Err(error("to", "`to` must not be before `from`"));
        }
        if (to - from).num_days() >= max_days {
            return Err(error(
                "to",
                format!("a range covers at most {max_days} days"),
            ));
        }
        Ok(Self { from, to, tz })
    }

    /// When the first day starts.
    pub fn start(&self) -> DateTime<Utc> {
        midnight(self.from, self.tz)
    }

    /// When the day after the last starts.
    pub fn end(&self) -> DateTime<Utc> {
        midnight(self.to + Duration::days(1), self.tz)
    }

    /// The day `at` falls on.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// Every day, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        self.from.iter_days().take_while({
            let to = self.to;
            move |d| *d <= to
        })
    }
}

/// When `day` starts in `tz`: its first moment, after any clock change that skips midnight.
fn midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    (0..24)
        .find_map(|hour| {
            let time = NaiveTime::from_hms_opt(hour, 0, 0)?;
            tz.from_local_datetime(&day.and_time(time)).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_time(NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn days_are_japanese_days_unless_a_zone_is_named() {
        let now = at("2026-12-01T16:00:00Z");
        let range = DayRange::parse(None, None, None, now, 366).unwrap();
        assert_eq!(range.to, NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        assert_eq!(range.from, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(range.start(), at("2026-11-30T15:00:00Z"));
        assert_eq!(range.end(), at("2026-12-02T15:00:00Z"));
        let utc = DayRange::parse(
            Some("2026-12-01"),
            Some("2026-12-01"),
            Some("UTC"),
            now,
            366,
        )
        .unwrap();
        assert_eq!(
            (utc.start(), utc.end()),
            (at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z"))
        );
        assert_eq!(
            range.day_of(at("2026-12-01T14:59:59Z")),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        assert_eq!(
            range.day_of(at("2026-12-01T15:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
        );
        assert_eq!(range.days().count(), 2);
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = Utc::now();
        let field = |from, to, tz| DayRange::parse(from, to, tz, now, 31).unwrap_err().field;
        assert_eq!(field(Some("2026/12/01"), None, None), "from");
        assert_eq!(field(None, Some("12-01"), None), "to");
        assert_eq!(field(Some("2026-12-02"), Some("2026-12-01"), None), "to");
        assert_eq!(field(Some("2026-01-01"), Some("2026-02-01"), None), "to");
        assert_eq!(field(None, None, Some("Mars/Olympus")), "tz");
        assert_eq!(field(Some("1999-12-31"), None, None), "from");
    }
}
