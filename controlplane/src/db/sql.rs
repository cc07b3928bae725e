//! SQL text for the three dialects. Only names checked by [`super::schema::column_ok`] (or taken
//! from the schema) are written into SQL; every value is a bound parameter.

use super::schema::{Column, Kind, Table};

/// Which SQL flavour a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
    Postgres,
}

impl Dialect {
    /// A quoted identifier (the name is already checked to be `[A-Za-z0-9_]`). SQLite gets
    /// backticks: a double-quoted name that is not a column silently becomes a string literal there.
    pub fn quote(self, name: &str) -> String {
        match self {
            Dialect::Mysql | Dialect::Sqlite => format!("`{name}`"),
            Dialect::Postgres => format!("\"{name}\""),
        }
    }

    /// The placeholder of parameter `i` (0-based).
    pub fn param(self, i: usize) -> String {
        match self {
            Dialect::Postgres => format!("${}", i + 1),
            Dialect::Sqlite | Dialect::Mysql => "?".to_string(),
        }
    }

    /// A selected column, as text where the driver would otherwise hand back typed values.
    fn select_col(self, name: &str) -> String {
        match self {
            Dialect::Postgres => format!("{}::text", self.quote(name)),
            Dialect::Sqlite | Dialect::Mysql => self.quote(name),
        }
    }

    fn conditions(self, keys: &[&str], first: usize) -> String {
        keys.iter()
            .enumerate()
            .map(|(i, k)| format!("{} = {}", self.quote(k), self.param(first + i)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `SELECT columns FROM table [WHERE k1 = ? AND …]`.
    pub fn select(self, table: &str, keys: &[&str], columns: &[&str]) -> String {
        let cols: Vec<String> = columns.iter().map(|c| self.select_col(c)).collect();
        let mut s = format!("SELECT {} FROM {}", cols.join(", "), self.quote(table));
        if !keys.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&self.conditions(keys, 0));
        }
        s
    }

    /// One page of rows: `SELECT columns FROM table [WHERE k = ? AND … AND (LOWER(s1) LIKE ? ESCAPE
    /// '!' OR …)] ORDER BY o1[ DESC], … LIMIT n OFFSET m` (the same text in all three dialects but
    /// for quoting and placeholders). The key values come first, then one LIKE pattern per search
    /// column (see [`like_pattern`]).
    pub fn select_page(self, table: &str, q: &PageQuery<'_>) -> String {
        let cols: Vec<String> = q.columns.iter().map(|c| self.select_col(c)).collect();
        let mut s = format!("SELECT {} FROM {}", cols.join(", "), self.quote(table));
        let mut conds = Vec::new();
        if !q.keys.is_empty() {
            conds.push(self.conditions(q.keys, 0));
        }
        if !q.search.is_empty() {
            let likes: Vec<String> = q
                .search
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!(
                        "LOWER({}) LIKE {} ESCAPE '!'",
                        self.quote(c),
                        self.param(q.keys.len() + i)
                    )
                })
                .collect();
            conds.push(format!("({})", likes.join(" OR ")));
        }
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        if !q.order_by.is_empty() {
            let dir = if q.descending { " DESC" } else { "" };
            let o: Vec<String> = q
                .order_by
                .iter()
                .map(|c| format!("{}{dir}", self.quote(c)))
                .collect();
            s.push_str(&format!(" ORDER BY {}", o.join(", ")));
        }
        s.push_str(&format!(" LIMIT {} OFFSET {}", q.limit, q.offset));
        s
    }

    /// `INSERT INTO table (cols) VALUES (?, …)`.
    pub fn insert(self, table: &str, columns: &[&str]) -> String {
        let cols: Vec<String> = columns.iter().map(|c| self.quote(c)).collect();
        let params: Vec<String> = (0..columns.len()).map(|i| self.param(i)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.quote(table),
            cols.join(", "),
            params.join(", ")
        )
    }

    /// `UPDATE table SET c1 = ?, … WHERE k1 = ? AND …` (set values first, then keys).
    pub fn update(self, table: &str, set: &[&str], keys: &[&str]) -> String {
        let sets: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = {}", self.quote(c), self.param(i)))
            .collect();
        format!(
            "UPDATE {} SET {} WHERE {}",
            self.quote(table),
            sets.join(", "),
            self.conditions(keys, set.len())
        )
    }

    /// `DELETE FROM table WHERE k1 = ? AND …`.
    pub fn delete(self, table: &str, keys: &[&str]) -> String {
        format!(
            "DELETE FROM {} WHERE {}",
            self.quote(table),
            self.conditions(keys, 0)
        )
    }

    /// The names of the tables that exist, one per row.
    pub fn list_tables(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Dialect::Mysql => {
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                 WHERE table_schema = DATABASE()"
            }
            Dialect::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()"
            }
        }
    }

    fn column_type(self, c: &Column) -> String {
        match (self, c.kind) {
            (_, Kind::Str(n)) => format!("VARCHAR({n})"),
            (_, Kind::Char(n)) => format!("CHAR({n})"),
            (Dialect::Sqlite, Kind::Int | Kind::UInt | Kind::Tiny) => "INTEGER".into(),
            (Dialect::Mysql, Kind::Int) => "INT".into(),
            (Dialect::Mysql, Kind::UInt) => "INT UNSIGNED".into(),
            (Dialect::Mysql, Kind::Tiny) => "TINYINT UNSIGNED".into(),
            (Dialect::Postgres, Kind::Int) => "INTEGER".into(),
            (Dialect::Postgres, Kind::UInt) => "BIGINT".into(),
            (Dialect::Postgres, Kind::Tiny) => "SMALLINT".into(),
            (Dialect::Sqlite, Kind::Float) => "REAL".into(),
            (Dialect::Mysql, Kind::Float) => "FLOAT(10,2)".into(),
            (Dialect::Postgres, Kind::Float) => "REAL".into(),
            (Dialect::Sqlite, Kind::DateTime | Kind::Stamp) => "TEXT".into(),
            (Dialect::Mysql, Kind::DateTime) => "DATETIME".into(),
            (Dialect::Mysql, Kind::Stamp) => "TIMESTAMP".into(),
            (Dialect::Postgres, Kind::DateTime | Kind::Stamp) => "TIMESTAMP".into(),
            (_, Kind::Text) => "TEXT".into(),
            (Dialect::Sqlite, Kind::Serial) => "INTEGER PRIMARY KEY AUTOINCREMENT".into(),
            (Dialect::Mysql, Kind::Serial) => {
                "INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY".into()
            }
            (Dialect::Postgres, Kind::Serial) => "SERIAL PRIMARY KEY".into(),
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for a schema table. Defaults are schema constants (no user
    /// input), quoted as SQL string literals.
    pub fn create_table(self, t: &Table) -> String {
        let mut parts: Vec<String> = Vec::new();
        for c in t.columns {
            let mut s = format!("{} {}", self.quote(c.name), self.column_type(c));
            if c.kind == Kind::Serial {
                parts.push(s);
                continue;
            }
            if !c.null {
                s.push_str(" NOT NULL");
            }
            if c.kind == Kind::Stamp {
                s.push_str(" DEFAULT CURRENT_TIMESTAMP");
                if self == Dialect::Mysql {
                    s.push_str(" ON UPDATE CURRENT_TIMESTAMP");
                }
            } else if let Some(def) = c.default {
                s.push_str(&format!(" DEFAULT '{}'", def.replace('\'', "''")));
            }
            parts.push(s);
        }
        if !t.key.is_empty() {
            let keys: Vec<String> = t.key.iter().map(|k| self.quote(k)).collect();
            parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.quote(t.name),
            parts.join(", ")
        )
    }
}

/// What [`Dialect::select_page`] selects (names checked by `Db::select_page` with
/// [`super::schema::column_ok`]).
#[derive(Debug, Clone, Default)]
pub struct PageQuery<'a> {
    pub columns: &'a [&'a str],
    /// Columns that must equal the given values.
    pub keys: &'a [&'a str],
    /// Columns any of which must contain the search text (case-insensitively); empty: no search.
    pub search: &'a [&'a str],
    pub order_by: &'a [&'a str],
    pub descending: bool,
    pub limit: u32,
    pub offset: u64,
}

/// The LIKE pattern that finds `text` anywhere, lower-cased, with LIKE's own characters (`%`, `_`
/// and the escape `!`) escaped.
pub fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let d = Dialect::Postgres;
        assert_eq!(
            d.select("location", &["username"], &["contact", "q"]),
            "SELECT \"contact\"::text, \"q\"::text FROM \"location\" WHERE \"username\" = $1"
        );
        assert_eq!(
            d.update("location", &["q"], &["username", "contact"]),
            "UPDATE \"location\" SET \"q\" = $1 WHERE \"username\" = $2 AND \"contact\" = $3"
        );
        let m = Dialect::Mysql;
        assert_eq!(
            m.insert("grp", &["username", "grp"]),
            "INSERT INTO `grp` (`username`, `grp`) VALUES (?, ?)"
        );
        assert_eq!(
            m.delete("grp", &["username"]),
            "DELETE FROM `grp` WHERE `username` = ?"
        );
        let ddl = Dialect::Sqlite.create_table(
            super::super::schema::table("location").unwrap_or(&super::super::schema::VERSION),
        );
        assert!(
            ddl.contains("PRIMARY KEY (`username`, `domain`, `contact`)"),
            "{ddl}"
        );
    }

    #[test]
    fn pages() {
        let q = PageQuery {
            columns: &["username", "domain"],
            keys: &["domain"],
            search: &["username", "email_address"],
            order_by: &["username"],
            descending: false,
            limit: 26,
            offset: 50,
        };
        assert_eq!(
            Dialect::Postgres.select_page("subscriber", &q),
            "SELECT \"username\"::text, \"domain\"::text FROM \"subscriber\" WHERE \"domain\" = $1 \
             AND (LOWER(\"username\") LIKE $2 ESCAPE '!' OR LOWER(\"email_address\") LIKE $3 ESCAPE '!') \
             ORDER BY \"username\" LIMIT 26 OFFSET 50"
        );
        let q = PageQuery {
            columns: &["time"],
            order_by: &["time"],
            descending: true,
            limit: 5,
            ..PageQuery::default()
        };
        assert_eq!(
            Dialect::Sqlite.select_page("acc", &q),
            "SELECT `time` FROM `acc` ORDER BY `time` DESC LIMIT 5 OFFSET 0"
        );
        assert_eq!(like_pattern("A_b%c!"), "%a!_b!%c!!%");
    }
}
