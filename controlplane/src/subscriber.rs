//! The subscriber row as every provisioning front end writes it (serctl's `add`/`passwd`, the web
//! UI): HA1 and HA1b computed here, never by the client, with SER's `sc` conventions
//! (`phplib_id` = HA1, creation and modification times in UTC).

use md5::{Digest, Md5};

/// HA1 as SER's `gen_ha1` computed it: MD5 of `user:realm:password`, lower-case hex.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    let digest = Md5::digest(format!("{user}:{realm}:{password}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subscriber's HA1 (username `user`) and HA1b (username `user@domain`, for user agents that
/// send the domain in the username), both in realm `domain`.
pub fn ha1_pair(user: &str, domain: &str, password: &str) -> (String, String) {
    (
        ha1(user, domain, password),
        ha1(&format!("{user}@{domain}"), domain, password),
    )
}

/// The columns a password change writes: `ha1`, `ha1b`, the plain `password` only when
/// `store_plain` (auth_db's `calculate_ha1` reads it; otherwise it is left empty, so a stolen
/// database does not hand out the passwords), and `datetime_modified`.
pub fn password_columns(
    user: &str,
    domain: &str,
    password: &str,
    store_plain: bool,
) -> Vec<(String, Option<String>)> {
    let (h, hb) = ha1_pair(user, domain, password);
    vec![
        ("ha1".into(), Some(h)),
        ("ha1b".into(), Some(hb)),
        (
            "password".into(),
            Some(if store_plain { password } else { "" }.to_string()),
        ),
        ("datetime_modified".into(), Some(now())),
    ]
}

/// A new subscriber's row: keys, password columns, `extra` (e-mail, names…), creation time and
/// SER's `phplib_id`.
pub fn new_row(
    user: &str,
    domain: &str,
    password: &str,
    store_plain: bool,
    extra: &[(&str, &str)],
) -> Vec<(String, Option<String>)> {
    let mut row = vec![
        ("username".to_string(), Some(user.to_string())),
        ("domain".to_string(), Some(domain.to_string())),
    ];
    let pw = password_columns(user, domain, password, store_plain);
    let ha1 = pw[0].1.clone();
    row.extend(pw);
    row.push(("datetime_created".into(), Some(now())));
    // SER's sc used HA1 as phplib_id.
    row.push(("phplib_id".into(), ha1));
    row.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string()))),
    );
    row
}

/// Now, as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    datetime(secs)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn datetime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc2617_example() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life.
        assert_eq!(
            ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        let (a, b) = ha1_pair("u", "d", "p");
        assert_eq!(a, ha1("u", "d", "p"));
        assert_eq!(b, ha1("u@d", "d", "p"));
    }

    #[test]
    fn plain_password_only_when_asked() {
        let get = |row: &[(String, Option<String>)], k: &str| {
            row.iter()
                .find(|(c, _)| c == k)
                .and_then(|(_, v)| v.clone())
        };
        let r = new_row(
            "alice",
            "example.com",
            "pw",
            false,
            &[("email_address", "a@x")],
        );
        assert_eq!(get(&r, "password").as_deref(), Some(""));
        assert_eq!(get(&r, "phplib_id"), get(&r, "ha1"));
        assert_eq!(get(&r, "email_address").as_deref(), Some("a@x"));
        let r = password_columns("alice", "example.com", "pw", true);
        assert_eq!(get(&r, "password").as_deref(), Some("pw"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(951_782_400), "2000-02-29 00:00:00");
        assert!(now().starts_with("20"));
    }
}
