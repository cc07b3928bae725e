//! A real browser for the web UI tests: Debian's `chromium` driven by `chromedriver` over its W3C
//! WebDriver HTTP API (JSON over HTTP/1.1 on loopback), and a plain HTTP/1.1 client for the
//! requests a browser would not send (no CSRF token, a foreign Origin). Both drivers are children
//! of the test, killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value a `Set-Cookie` gives cookie `name` (with its attributes: the whole header).
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < nl + 2 + size {
            return out;
        }
        out.extend_from_slice(&body[nl + 2..nl + 2 + size]);
        body = &body[(nl + 4 + size).min(body.len())..];
    }
}

/// One HTTP/1.1 request (`Connection: close`) to 127.0.0.1:`port`, with extra header lines.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Http {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write http");
    // Read the head, then the body by Content-Length when given (chromedriver keeps the
    // connection open whatever `Connection: close` says), else to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("no HTTP response head: {}", String::from_utf8_lossy(&raw)),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let length = String::from_utf8_lossy(&raw[..split])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => {
            while raw.len() < split + 4 + n {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => raw.extend_from_slice(&buf[..k]),
                }
            }
        }
        None => {
            let _ = s.read_to_end(&mut raw);
        }
    }
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Http {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `<input … name="NAME" value="…">` in a page (the first one).
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Waits up to 20 s for `driver` to answer `GET /status` on `port` as a webdriver does; false
/// when it exits first or never does.
fn driver_ready(driver: &mut Child, port: u16) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if driver.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            if s.write_all(req.as_bytes()).is_ok() {
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(7).any(|w| w == b"\"ready\"") {
                        return true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    pub profile: PathBuf,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver on `port` and a Chromium with the test flags and a fresh profile in
    /// `dir`.
    pub fn start(port: u16, dir: &Path) -> Browser {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        // The port was free when picked; a parallel test may take it before chromedriver binds
        // it (chromedriver then exits, and whatever holds the port is no webdriver). Such a start
        // is retried on another port.
        let mut port = port;
        let mut started = None;
        for _ in 0..3 {
            let mut driver = Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver");
            if driver_ready(&mut driver, port) {
                started = Some(driver);
                break;
            }
            let _ = driver.kill();
            let _ = driver.wait();
            port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
        }
        let mut b = Browser {
            driver: started.expect("chromedriver did not answer /status (three starts)"),
            port,
            session: String::new(),
            profile: profile.clone(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let ct = [("Content-Type", "application/json")];
        let r = http(
            self.port,
            method,
            path,
            if body.is_empty() { &[] } else { &ct },
            &body,
        );
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}: {}", r.body));
        if r.status != 200 {
            panic!("webdriver {method} {path}: {} {}", r.status, v["value"]);
        }
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The page's HTML as the browser has it (the DOM, serialised).
    pub fn source(&self) -> String {
        self.call("GET", &self.s("/source"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Element ids matching a CSS selector.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(String::from))
            .collect()
    }

    /// The first element matching `css`, waiting up to 10 s for it (a form post's page may still
    /// be loading); panics when there is none.
    pub fn find(&self, css: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            if Instant::now() > end {
                panic!("no element {css} on {}:\n{}", self.url(), self.source());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to 10 s for the page's URL to end with `suffix`; whether it did.
    pub fn at(&self, suffix: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if self.url().ends_with(suffix) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn text(&self, el: &str) -> String {
        self.call("GET", &self.s(&format!("/element/{el}/text")), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The visible text of the first element matching `css`.
    pub fn text_of(&self, css: &str) -> String {
        self.text(&self.find(css))
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/clear")),
            Some(json!({})),
        );
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, el: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/click")),
            Some(json!({})),
        );
    }

    pub fn click_on(&self, css: &str) {
        self.click(&self.find(css));
    }

    /// The browser's cookies (WebDriver's view: name, value, httpOnly, sameSite…).
    pub fn cookies(&self) -> Vec<Value> {
        self.call("GET", &self.s("/cookie"), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn delete_cookies(&self) {
        self.call("DELETE", &self.s("/cookie"), None);
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.port, "DELETE", &self.s(""), &[], "");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // The profile is large and of no use afterwards (the screenshots stay).
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
