//! Prints the wire layer's verdict (parse + check) for each file given: a debugging aid for the
//! corpus. Usage: sipcheck FILE...

use bytes::Bytes;
use dataplane::wire::Message;

fn main() {
    for path in std::env::args().skip(1) {
        let verdict = match std::fs::read(&path) {
            Err(e) => format!("unreadable: {e}"),
            Ok(raw) => match Message::parse(Bytes::from(raw)) {
                Err(e) => format!("parse: {e:?} ({})", e.kind.reason()),
                Ok(m) => match m.check() {
                    Err(e) => format!("check: {e:?} ({})", e.kind.reason()),
                    Ok(()) => "ok".to_string(),
                },
            },
        };
        println!("{path}: {verdict}");
    }
}
