//! SER's database schema: every table the Admin Guide lists (§6.6) plus `domain` and `uri` (the
//! domain and uri modules) and `pdt` (module pdt's prefix → domain pairs), with SER's table and
//! column names so a database made by SER's
//! `ser_mysql.sh` keeps working.
//!
//! The column set is the union of SER 0.8.11's and the SER 0.9 `ser_mysql.sh` that followed it
//! (`location`/`aliases` with `received`, `flags`, `user_agent`; `subscriber` with `perms` and
//! `rpid`; `silo` with `username`/`domain`), and the versions recorded in `version` are that
//! script's: subscriber 5, pending 4, location 6, aliases 6, silo 3, acc 2, missed_calls 2, grp 2,
//! everything else 1.
//!
//! Deliberate differences from `ser_mysql.sh` (tables ser creates; existing tables are left alone):
//! - `subscriber.phplib_id`/`pending.phplib_id` are not UNIQUE: rows made by other tools without a
//!   phplib_id (all '') must not collide.
//! - `location`/`aliases`: `user_agent` is 255 wide (SER: 50; MariaDB in strict mode refuses longer
//!   values instead of truncating), and `expires` defaults to 2037-12-31 (SER's "forever" was 2020).
//! - Every table gets its primary key; no secondary indexes beyond them.
//!
//! Invariant: table and column names here are plain `[a-z_]` identifiers; [`column_ok`] is what
//! keeps every other name out of SQL text.

/// What a column holds; each dialect maps it to its own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `varchar(n)`.
    Str(u16),
    /// `char(n)`.
    Char(u16),
    /// Signed integer.
    Int,
    /// Unsigned integer (MySQL `int unsigned`, elsewhere a 64-bit integer).
    UInt,
    /// Small integer (`tinyint unsigned` in SER).
    Tiny,
    /// Floating point (`q`).
    Float,
    /// Date and time without zone (`'YYYY-MM-DD HH:MM:SS'`).
    DateTime,
    /// Set by the database when the row is written (`timestamp(14)` in SER).
    Stamp,
    /// Long text.
    Text,
    /// Auto-increment integer primary key.
    Serial,
}

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// NULL allowed.
    pub null: bool,
    /// Default value (text, quoted by the DDL writer), if any.
    pub default: Option<&'static str>,
}

/// One table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// The value ser records (and expects) in the `version` table.
    pub version: u32,
    pub columns: &'static [Column],
    /// Primary key columns (empty: none, or a [`Kind::Serial`] column).
    pub key: &'static [&'static str],
}

impl Table {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn c(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        null: false,
        default: None,
    }
}
const fn d(name: &'static str, kind: Kind, default: &'static str) -> Column {
    Column {
        name,
        kind,
        null: false,
        default: Some(default),
    }
}
const fn n(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        null: true,
        default: None,
    }
}

use Kind::*;

/// A date in the past for "never set" datetime columns (SER used the zero date, which MariaDB in
/// strict mode and PostgreSQL refuse).
pub const NO_DATE: &str = "1900-01-01 00:00:01";
/// Expiry of contacts added without one (SER's `FOREVER`, moved past 2020).
pub const FOREVER: &str = "2037-12-31 23:59:59";

const ACC_COLUMNS: &[Column] = &[
    d("sip_from", Str(128), ""),
    d("sip_to", Str(128), ""),
    d("sip_status", Str(128), ""),
    d("sip_method", Str(16), ""),
    d("i_uri", Str(128), ""),
    d("o_uri", Str(128), ""),
    d("from_uri", Str(128), ""),
    d("to_uri", Str(128), ""),
    d("sip_callid", Str(128), ""),
    d("username", Str(64), ""),
    d("domain", Str(128), ""),
    d("fromtag", Str(128), ""),
    d("totag", Str(128), ""),
    d("time", DateTime, NO_DATE),
    c("timestamp", Stamp),
];

const LOCATION_COLUMNS: &[Column] = &[
    d("username", Str(64), ""),
    d("domain", Str(128), ""),
    d("contact", Str(255), ""),
    n("received", Str(255)),
    d("expires", DateTime, FOREVER),
    d("q", Float, "1.0"),
    d("callid", Str(255), "Default-Call-ID"),
    d("cseq", Int, "42"),
    c("last_modified", Stamp),
    d("replicate", UInt, "0"),
    d("state", Tiny, "0"),
    d("flags", Int, "0"),
    d("user_agent", Str(255), ""),
];

const SUBSCRIBER_COLUMNS: &[Column] = &[
    d("phplib_id", Str(32), ""),
    d("username", Str(64), ""),
    d("domain", Str(128), ""),
    d("password", Str(25), ""),
    d("first_name", Str(25), ""),
    d("last_name", Str(45), ""),
    d("phone", Str(15), ""),
    d("email_address", Str(50), ""),
    d("datetime_created", DateTime, NO_DATE),
    d("datetime_modified", DateTime, NO_DATE),
    d("confirmation", Str(64), ""),
    d("flag", Char(1), "o"),
    d("sendnotification", Str(50), ""),
    d("greeting", Str(50), ""),
    d("ha1", Str(128), ""),
    d("ha1b", Str(128), ""),
    n("perms", Str(32)),
    d("allow_find", Char(1), "0"),
    n("timezone", Str(128)),
    n("rpid", Str(128)),
];

/// The `version` table itself (not versioned).
pub const VERSION: Table = Table {
    name: "version",
    version: 0,
    columns: &[c("table_name", Str(64)), d("table_version", Int, "0")],
    key: &[],
};

/// Every table ser creates, in creation order.
pub const TABLES: &[Table] = &[
    Table {
        name: "subscriber",
        version: 5,
        columns: SUBSCRIBER_COLUMNS,
        key: &["username", "domain"],
    },
    Table {
        name: "reserved",
        version: 1,
        columns: &[d("username", Char(64), "")],
        key: &["username"],
    },
    Table {
        name: "phonebook",
        version: 1,
        columns: &[
            c("id", Serial),
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            d("fname", Str(32), ""),
            d("lname", Str(32), ""),
            d("sip_uri", Str(128), ""),
        ],
        key: &[],
    },
    Table {
        name: "pending",
        version: 4,
        columns: SUBSCRIBER_COLUMNS,
        key: &["username", "domain"],
    },
    Table {
        name: "missed_calls",
        version: 2,
        columns: ACC_COLUMNS,
        key: &[],
    },
    Table {
        name: "location",
        version: 6,
        columns: LOCATION_COLUMNS,
        key: &["username", "domain", "contact"],
    },
    Table {
        name: "grp",
        version: 2,
        columns: &[
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            d("grp", Str(50), ""),
            d("last_modified", DateTime, NO_DATE),
        ],
        key: &["username", "domain", "grp"],
    },
    Table {
        name: "event",
        version: 1,
        columns: &[
            c("id", Serial),
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            d("uri", Str(255), ""),
            d("description", Str(255), ""),
        ],
        key: &[],
    },
    Table {
        name: "aliases",
        version: 6,
        columns: LOCATION_COLUMNS,
        key: &["username", "domain", "contact"],
    },
    Table {
        name: "active_sessions",
        version: 1,
        columns: &[
            d("sid", Str(32), ""),
            d("name", Str(32), ""),
            n("val", Text),
            d("changed", Str(14), ""),
        ],
        key: &["name", "sid"],
    },
    Table {
        name: "acc",
        version: 2,
        columns: ACC_COLUMNS,
        key: &[],
    },
    Table {
        name: "config",
        version: 1,
        columns: &[
            c("attribute", Str(32)),
            c("value", Str(128)),
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            c("modified", Stamp),
        ],
        key: &[],
    },
    Table {
        name: "silo",
        version: 3,
        columns: &[
            c("mid", Serial),
            d("src_addr", Str(255), ""),
            d("dst_addr", Str(255), ""),
            d("r_uri", Str(255), ""),
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            d("inc_time", Int, "0"),
            d("exp_time", Int, "0"),
            d("ctype", Str(32), "text/plain"),
            d("body", Text, ""),
        ],
        key: &[],
    },
    // Module jabber's accounts (SER's sip_jab database, here beside the other tables).
    Table {
        name: "jusers",
        version: 1,
        columns: &[
            c("juid", Serial),
            d("jab_id", Str(128), ""),
            n("jab_passwd", Str(50)),
            d("sip_id", Str(128), ""),
            d("type", Int, "0"),
        ],
        key: &[],
    },
    // Module pa's subscriptions with use_db (ser's table: the whole notifier dialog).
    Table {
        name: "pa_watchers",
        version: 1,
        columns: &[
            d("s_key", Str(255), ""),
            d("presentity", Str(255), ""),
            d("w_uri", Str(255), ""),
            d("w_tag", Str(128), ""),
            d("s_tag", Str(128), ""),
            d("callid", Str(255), ""),
            d("contact", Str(255), ""),
            n("next_hop", Str(255)),
            d("local_contact", Str(255), ""),
            d("cseq", Int, "1"),
            d("expires", Int, "0"),
        ],
        key: &["callid", "s_tag"],
    },
    // Module pa's publications with use_db (ser's table: one PUBLISHed PIDF per entity tag).
    Table {
        name: "pa_publications",
        version: 1,
        columns: &[
            d("etag", Str(128), ""),
            d("s_key", Str(255), ""),
            d("expires", Int, "0"),
            d("doc", Text, ""),
        ],
        key: &["etag"],
    },
    Table {
        name: "domain",
        version: 1,
        columns: &[
            d("domain", Str(128), ""),
            d("last_modified", DateTime, NO_DATE),
        ],
        key: &["domain"],
    },
    Table {
        name: "pdt",
        version: 1,
        columns: &[d("prefix", Str(32), ""), d("domain", Str(128), "")],
        key: &["prefix"],
    },
    Table {
        name: "uri",
        version: 1,
        columns: &[
            d("username", Str(64), ""),
            d("domain", Str(128), ""),
            d("uri_user", Str(50), ""),
            d("last_modified", DateTime, NO_DATE),
        ],
        key: &["username", "domain", "uri_user"],
    },
];

/// The schema's table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Whether `name` may appear in SQL as a table or column name: 1–64 of `[A-Za-z0-9_]`, not
/// starting with a digit. Values never go into SQL text; names only after this check.
pub fn ident_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a table name and its column names: identifiers only, and for a table of the schema,
/// columns it has. Tables outside the schema (a script's own `save("mytable")`) are allowed with
/// identifier checks alone.
pub fn column_ok<'a>(
    table: &str,
    columns: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    if !ident_ok(table) {
        return Err(format!("invalid table name {table:?}"));
    }
    let known = self::table(table);
    for col in columns {
        if !ident_ok(col) {
            return Err(format!("invalid column name {col:?} (table {table})"));
        }
        if let Some(t) = known {
            if t.column(col).is_none() {
                return Err(format!("table {table} has no column {col}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_and_keys_exist() {
        for t in TABLES.iter().chain([&VERSION]) {
            assert!(ident_ok(t.name), "{}", t.name);
            for c in t.columns {
                assert!(ident_ok(c.name), "{}.{}", t.name, c.name);
            }
            for k in t.key {
                assert!(t.column(k).is_some(), "{}.{k}", t.name);
            }
        }
        assert!(!ident_ok("a b"));
        assert!(!ident_ok("x;drop"));
        assert!(!ident_ok("1x"));
        assert!(!ident_ok(""));
        assert!(column_ok("location", ["username", "contact"]).is_ok());
        assert!(column_ok("location", ["nope"]).is_err());
        assert!(column_ok("my_table", ["anything"]).is_ok());
        assert!(column_ok("my table", ["x"]).is_err());
    }
}
