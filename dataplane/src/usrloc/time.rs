//! Wall-clock times as usrloc needs them: Unix seconds, SER's `expires` column text
//! (`YYYY-MM-DD HH:MM:SS`, UTC) and the RFC 3261 `Date` header (RFC 1123 form, GMT).
//!
//! Civil-date conversion is Howard Hinnant's days-from-civil algorithm (proleptic Gregorian), so no
//! time-zone database or calendar crate is needed: every time here is UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time: SER's `expires`/`last_modified` column format.
pub fn datetime(unix: u64) -> String {
    let secs = unix as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Parses a datetime column as the databases hand it back: `YYYY-MM-DD HH:MM:SS` (a `T` instead of
/// the blank, fractions and a zone suffix are tolerated and taken as UTC), or plain Unix seconds.
/// `None` when it is neither.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep_ok = b[4] == b'-' && b[7] == b'-' && matches!(b[10], b' ' | b'T') && b[13] == b':';
    if !sep_ok || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let t = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
    u64::try_from(t).ok()
}

/// RFC 3261 §20.17 / RFC 1123 date: `Sat, 13 Nov 2010 23:29:00 GMT`.
pub fn http_date(unix: u64) -> String {
    let mut s = String::with_capacity(29);
    write_http_date(unix, &mut s);
    s
}

/// [`http_date`] appended to `out`, formatted once per second per thread (every 200 OK to a
/// REGISTER carries one).
pub fn write_http_date(unix: u64, out: &mut String) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != unix {
            l.1 = format_http_date(unix);
            l.0 = unix;
        }
        out.push_str(&l.1);
    });
}

fn format_http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix as i64;
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let t = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(parse_datetime("2023-11-14 22:13:20"), Some(1_700_000_000));
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20+00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_datetime("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_datetime("2023-13-14 22:13:20"), None);
        assert_eq!(parse_datetime("garbage"), None);
        assert_eq!(parse_datetime(""), None);
        for t in [0u64, 951_782_400, 1_234_567_890, 4_102_444_800] {
            assert_eq!(parse_datetime(&datetime(t)), Some(t));
        }
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
