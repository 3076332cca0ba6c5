//! A plain HTTP/1 client for the HTTP tests: one request per connection, the answer's
//! status, headers and body (as text, and as JSON when it is).

use super::LIMIT;
use fanfare::EventId;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::time::timeout;

/// An HTTP answer: status and JSON body (`null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`null` when it is not).
    pub body: Value,
}

impl Answer {
    /// A header's value, empty when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    pub fn ids(&self) -> Vec<EventId> {
        let ids = self.body["ids"].as_array().expect("no ids in the answer");
        ids.iter()
            .map(|id| id.as_str().expect("an id is a string").parse().unwrap())
            .collect()
    }
}

/// Sends one request on a new HTTP/1 connection; its body is JSON unless `headers` say
/// otherwise.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let res = timeout(LIMIT, sender.send_request(req))
        .await
        .expect("no answer in time")
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}
