//! The windows quotas count in, all UTC: the minute, the day, the calendar month.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The windows a moment falls in, and when each ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    /// Unix seconds of the moment.
    pub now: u64,
    /// Minutes since the epoch.
    pub minute: u64,
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Time left in the minute.
    pub minute_left: Duration,
    /// When the day ends (Unix seconds).
    pub day_ends: u64,
    /// When the month ends (Unix seconds).
    pub month_ends: u64,
}

impl Windows {
    /// The windows of `now`.
    pub fn at(now: SystemTime) -> Self {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = since.as_secs();
        let days = seconds / 86_400;
        let (year, month, day) = civil_from_days(days);
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let minute_ends = Duration::from_secs((seconds / 60 + 1) * 60);
        Self {
            now: seconds,
            minute: seconds / 60,
            day: format!("{year:04}-{month:02}-{day:02}"),
            month: format!("{year:04}-{month:02}"),
            minute_left: minute_ends.saturating_sub(since),
            day_ends: (days + 1) * 86_400,
            month_ends: days_from_civil(next_year, next_month, 1) * 86_400,
        }
    }
}

/// RFC 3339 of Unix seconds.
pub fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> Windows {
        Windows::at(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn days_months_and_their_ends() {
        // 2026-01-31T23:59:30Z
        let windows = at(1_769_903_970);
        assert_eq!(
            (windows.day.as_str(), windows.month.as_str()),
            ("2026-01-31", "2026-01")
        );
        assert_eq!(rfc3339(windows.day_ends), "2026-02-01T00:00:00Z");
        assert_eq!(rfc3339(windows.month_ends), "2026-02-01T00:00:00Z");
        assert_eq!(windows.minute_left, Duration::from_secs(30));
        // December rolls into the next year; February 2028 has 29 days.
        assert_eq!(
            rfc3339(at(1_797_000_000).month_ends),
            "2027-01-01T00:00:00Z"
        );
        let leap = at(1_835_481_600); // 2028-03-01
        assert_eq!(leap.day, "2028-03-01");
        assert_eq!(at(1_835_481_599).day, "2028-02-29");
    }
}
