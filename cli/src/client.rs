//! A small client of the runtime's HTTP API: one HTTP/1 connection per request (hyper's
//! client, which fanfare's server already builds), JSON in and out, every failure turned
//! into a [`Failure`] that says what happened and what to do.

use crate::error::{Failure, Kind};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where the runtime listens, from `--url`: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// What the user gave, without a trailing `/`, for messages.
    pub url: String,
    /// Host as it goes in the `Host` header (`[::1]` keeps its brackets).
    authority: String,
    /// Host to connect to (no brackets).
    host: String,
    port: u16,
    /// A path the API is mounted under (`/fanfare`), or empty.
    prefix: String,
}

impl Base {
    /// Parses `--url`. Only plain `http://` is supported.
    pub fn parse(url: &str) -> Result<Base, Failure> {
        let url = url.trim().trim_end_matches('/');
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(Failure::usage(format!(
                    "`{url}`: https is not supported, only plain http:// — reach the runtime \
                     on its own address (e.g. through an SSH tunnel or on the host), or put \
                     a TLS-terminating proxy in front of it for other clients"
                )))
            }
            Some((scheme, _)) => {
                return Err(Failure::usage(format!(
                    "`{url}`: unsupported scheme `{scheme}`: expected http://host:port"
                )))
            }
            None => {
                return Err(Failure::usage(format!(
                    "`{url}` is not a URL: expected http://host:port, e.g. http://127.0.0.1:8288"
                )))
            }
        };
        let (authority, prefix) = match rest.find(['/', '?', '#']) {
            Some(i) if rest[i..].starts_with('/') && !rest[i..].contains(['?', '#']) => {
                (&rest[..i], &rest[i..])
            }
            Some(_) => {
                return Err(Failure::usage(format!(
                    "`{url}`: a query or fragment is not allowed; expected http://host:port[/path]"
                )))
            }
            None => (rest, ""),
        };
        let bad = |why: &str| Failure::usage(format!("`{url}`: {why}; expected http://host:port"));
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported (use --admin-key)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad(&format!("`{p}` is not a port")))?,
        };
        Ok(Base {
            url: url.to_string(),
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
        })
    }
}

/// The API client.
pub struct Client {
    pub base: Base,
    key: Option<String>,
    timeout: Duration,
}

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub fn new(base: Base, key: Option<String>, timeout: Duration) -> Client {
        Client {
            base,
            key: key.filter(|k| !k.is_empty()),
            timeout,
        }
    }

    /// `GET path` (path and query, from the API's root).
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, or none.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        self.request(Method::POST, path, body).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let what = format!("{method} {}{path}", self.base.url);
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(Failure::server(format!(
                "{what}: no answer within {} s — is the runtime overloaded? raise --timeout",
                self.timeout.as_secs()
            ))),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let base = &self.base;
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((base.host.as_str(), base.port)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(unreachable(base, &io_reason(&e))),
            Err(_) => return Err(unreachable(base, "no answer to the connection")),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(base, &e.to_string()))?;
        tokio::spawn(conn);

        let body = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| {
                Failure::new(Kind::Other, format!("cannot encode the request: {e}"))
            })?),
            None => Bytes::new(),
        };
        let uri = format!("{}{path}", base.prefix);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(HOST, &base.authority)
            .header(
                USER_AGENT,
                concat!("fanfare-cli/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &self.key {
            let value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                Failure::usage("the admin key has characters a header cannot carry")
            })?;
            req = req.header(AUTHORIZATION, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| {
            Failure::usage(format!("`{}{uri}` is not a valid request: {e}", base.url))
        })?;

        let what = format!("{method} {}{path}", base.url);
        let answer = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::server(format!("{what}: the connection failed: {e}")))?;
        let status = answer.status().as_u16();
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::server(format!("{what}: the answer was cut off: {e}")))?
            .to_bytes();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| {
                Failure::server(format!(
                    "{what}: the answer is not JSON ({status}, {} bytes) — is {} a fanfare runtime?",
                    bytes.len(),
                    base.url
                ))
            });
        }
        Err(http_failure(
            &what,
            &base.url,
            status,
            json.as_ref(),
            self.key.is_some(),
        ))
    }
}

/// Why a connection failed, short: `connection refused` rather than the OS's wording.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "timed out".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => e.to_string(),
    }
}

/// A connection that could not be made.
fn unreachable(base: &Base, why: &str) -> Failure {
    Failure::server(format!(
        "cannot reach {}: {why} — is the runtime running and started with `.http(…)`? \
         set FANFARE_URL or --url to its address",
        base.url
    ))
}

/// An error answer: the server's message, and what to do about it.
pub fn http_failure(
    what: &str,
    url: &str,
    status: u16,
    body: Option<&Value>,
    has_key: bool,
) -> Failure {
    let kind = Kind::of_status(status);
    let message = body
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let text = match (kind, message) {
        (Kind::Unauthorized, m) => {
            let m = m.unwrap_or_else(|| "unauthorized".into());
            if has_key {
                format!(
                    "{what}: {m} ({status}) — the admin key was refused: set FANFARE_ADMIN_KEY \
                     or --admin-key to one of the runtime's `.admin_key(…)`s"
                )
            } else {
                format!(
                    "{what}: {m} ({status}) — no admin key given: set FANFARE_ADMIN_KEY or \
                     --admin-key to one of the runtime's `.admin_key(…)`s"
                )
            }
        }
        (Kind::NotFound, Some(m)) => m,
        (Kind::NotFound, None) => format!(
            "{what}: not found (404, not an answer of fanfare's API) — is {url} the runtime's \
             address (with its path, if the API is mounted in an app) and does the runtime \
             serve the runs API?"
        ),
        (Kind::Usage, Some(m)) => format!("the runtime refused the request: {m}"),
        (Kind::Refused, Some(m)) => m,
        (Kind::Server, Some(m)) => format!("{what}: the runtime failed ({status}): {m}"),
        (Kind::Server, None) => format!("{what}: the runtime failed ({status})"),
        (_, Some(m)) => format!("{what}: {m} ({status})"),
        (_, None) => format!("{what}: unexpected answer {status}"),
    };
    Failure::new(kind, text)
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string (`?a=1&b=x`) of the pairs whose value is set; empty if none is.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if let Some(v) = value {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(name);
            out.push('=');
            out.push_str(&encode(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_prefix() {
        let b = Base::parse("http://127.0.0.1:8288").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.prefix.as_str()),
            ("127.0.0.1", 8288, "")
        );
        let b = Base::parse("http://example.com/fanfare/").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.prefix.as_str()),
            ("example.com", 80, "/fanfare")
        );
        assert_eq!(b.url, "http://example.com/fanfare");
        let b = Base::parse("HTTP://[::1]:9000").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.authority.as_str()),
            ("::1", 9000, "[::1]:9000")
        );
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for (url, says) in [
            ("https://x:1", "https is not supported"),
            ("127.0.0.1:8288", "not a URL"),
            ("ftp://x", "unsupported scheme"),
            ("http://x:port", "`port` is not a port"),
            ("http://x:99999", "not a port"),
            ("http://:80", "host is missing"),
            ("http://u:p@x", "credentials"),
            ("http://x?a=1", "query"),
        ] {
            let e = Base::parse(url).unwrap_err();
            assert_eq!(e.kind, Kind::Usage, "{url}");
            assert!(e.message.contains(says), "{url}: {}", e.message);
        }
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query(&[
                ("status", Some("failed".into())),
                ("function", None),
                ("event", Some("a b/c:d".into())),
            ]),
            "?status=failed&event=a%20b%2Fc%3Ad"
        );
        assert_eq!(query(&[("after", None)]), "");
    }

    #[test]
    fn error_answers_say_what_to_do() {
        let body = serde_json::json!({"error": "no run with id 1", "status": 404});
        let f = http_failure("GET u/api/runs/1", "u", 404, Some(&body), true);
        assert_eq!((f.kind.code(), f.message.as_str()), (3, "no run with id 1"));
        let f = http_failure("GET u/api/runs/1", "u", 404, None, true);
        assert!(
            f.message.contains("not an answer of fanfare's API"),
            "{}",
            f.message
        );
        let f = http_failure("GET u/api/runs", "u", 401, None, false);
        assert_eq!(f.kind.code(), 5);
        assert!(f.message.contains("no admin key given"), "{}", f.message);
        let f = http_failure("GET u/api/runs", "u", 401, None, true);
        assert!(
            f.message.contains("the admin key was refused"),
            "{}",
            f.message
        );
        let body = serde_json::json!({"error": "`since`: not an integer", "status": 400});
        let f = http_failure("GET u/api/runs", "u", 400, Some(&body), true);
        assert_eq!(f.kind.code(), 2);
        assert!(f.message.contains("`since`"));
        let f = http_failure("GET u/api/runs", "u", 503, None, true);
        assert_eq!(f.kind.code(), 6);
    }
}
