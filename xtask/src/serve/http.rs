//! Just enough HTTP/1.1 for one page and its JSON API: one request per
//! connection (`Connection: close`), parsed by `httparse`, with every size
//! and wait bounded here, before anything is allocated for it. A page polls
//! a few times a second on loopback; keep-alive would buy nothing there.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The request line and headers together: browsers send under 2 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// A request body: a drawing (784 numbers as JSON) is under 16 KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// Headers a request may have.
const MAX_HEADERS: usize = 48;
/// How long a client has to send its whole request: a stalled or trickling
/// client gives its thread back after this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A request as the handlers see it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query: `/api/test`.
    pub path: String,
    /// The query without its `?`: `model=0&position=3` (empty when none).
    pub query: String,
    /// The `Host` header, which must name this server (no DNS rebinding).
    pub host: Option<String>,
    /// The `Origin` header, sent by browsers with every POST.
    pub origin: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// `Sec-Fetch-Site`: browsers say with every request whether another
    /// site's page made it (`cross-site`).
    pub fetch_site: Option<String>,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of `name` in the query (`model` in `model=0&position=3`).
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// A response: a status, a type and a body.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body's media type.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// `{"error": message}` with a 4xx or 5xx status.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// The page.
    pub fn html(page: &'static str) -> Self {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: page.as_bytes().to_vec(),
        }
    }
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A connection whose reads can be made to give up: each read waits at
/// most the time left before the request's deadline.
pub trait Connection: Read + Write {
    /// The longest the next read may wait.
    fn wait_at_most(&mut self, wait: Duration);
}

impl Connection for std::net::TcpStream {
    fn wait_at_most(&mut self, wait: Duration) {
        // A zero timeout would mean "wait for ever".
        let _ = self.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
    }
}

/// Reads one request within [`REQUEST_DEADLINE`]. `check` sees the request
/// line and headers before the body is read (or a client waiting on
/// `Expect: 100-continue` told to send it): a request it refuses is
/// answered without its body. `Err(Some(response))`: a request refused with
/// that answer; `Err(None)`: the client went away (or sent nothing), there
/// is no one to answer.
pub fn read_request(
    stream: &mut impl Connection,
    check: impl Fn(&Request) -> Option<Response>,
) -> Result<Request, Option<Response>> {
    let started = Instant::now();
    let left = || REQUEST_DEADLINE.saturating_sub(started.elapsed());
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let (request, head_len, length) = loop {
        if filled == MAX_HEAD {
            return Err(Some(Response::error(
                431,
                "the request's line and headers are over 16 KiB",
            )));
        }
        if left().is_zero() {
            return Err(Some(Response::error(408, "the request took too long to arrive")));
        }
        stream.wait_at_most(left());
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(None),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Some(Response::error(408, "the request took too long to arrive")));
            }
            Err(_) => return Err(None),
        };
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf[..filled]) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(head_len)) => {
                // Every header that matters here at most once: two Hosts or
                // two lengths are a request read two ways.
                let mut values: [Option<String>; 5] = Default::default();
                const NAMES: [&str; 5] = ["host", "origin", "content-type", "content-length", "sec-fetch-site"];
                for h in parsed.headers.iter() {
                    if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Some(Response::error(
                            501,
                            "Transfer-Encoding is not taken; send the body with Content-Length",
                        )));
                    }
                    if let Some(i) = NAMES.iter().position(|n| h.name.eq_ignore_ascii_case(n)) {
                        if values[i].is_some() {
                            return Err(Some(Response::error(
                                400,
                                format!("the request has two {} headers", NAMES[i]),
                            )));
                        }
                        values[i] = Some(String::from_utf8_lossy(h.value).trim().to_string());
                    }
                }
                let [host, origin, content_type, content_length, fetch_site] = values;
                let length = match content_length {
                    None => 0,
                    Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                        v.parse::<usize>().unwrap_or(usize::MAX)
                    }
                    Some(_) => return Err(Some(Response::error(400, "Content-Length is not a number"))),
                };
                if length > MAX_BODY {
                    return Err(Some(Response::error(
                        413,
                        format!("the request body is over the {MAX_BODY} bytes this server takes"),
                    )));
                }
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let request = Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    host,
                    origin,
                    content_type,
                    fetch_site,
                    body: Vec::new(),
                };
                if let Some(refusal) = check(&request) {
                    return Err(Some(refusal));
                }
                let expects_continue = parsed
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue"));
                if expects_continue && length > filled - head_len {
                    // curl asks before sending a body over 1 KiB.
                    let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                break (request, head_len, length);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Some(Response::error(
                    431,
                    format!("the request has more than {MAX_HEADERS} headers"),
                )))
            }
            Err(e) => return Err(Some(Response::error(400, format!("a malformed request ({e})")))),
        }
    };
    let mut request = request;
    let mut body = buf[head_len..filled].to_vec();
    body.truncate(length);
    while body.len() < length {
        if left().is_zero() {
            return Err(Some(Response::error(408, "the request body took too long to arrive")));
        }
        stream.wait_at_most(left());
        let mut chunk = [0u8; 8192];
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(None),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Some(Response::error(408, "the request body took too long to arrive")));
            }
            Err(_) => return Err(None),
        }
    }
    request.body = body;
    Ok(request)
}

/// The page may run inline script and style, and talk to this server only:
/// nothing from outside is loaded even if something tried.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Writes `response` (its head only, for a HEAD request) and closes the
/// exchange (`Connection: close`).
pub fn write_response(stream: &mut impl Write, response: &Response, head_only: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if response.content_type.starts_with("text/html") {
        head += &format!("Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's bytes in, as it sends them (each read gets the next
    /// piece), and the server's bytes out.
    struct Exchange {
        pieces: std::collections::VecDeque<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Exchange {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut piece) = self.pieces.pop_front() else {
                return Ok(0);
            };
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                self.pieces.push_front(piece.split_off(n));
            }
            Ok(n)
        }
    }

    impl Connection for Exchange {
        fn wait_at_most(&mut self, _wait: Duration) {}
    }

    impl Write for Exchange {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn read_pieces(pieces: &[&[u8]]) -> (Result<Request, Option<Response>>, Vec<u8>) {
        let mut exchange = Exchange {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            output: Vec::new(),
        };
        let result = read_request(&mut exchange, |_| None);
        (result, exchange.output)
    }

    fn read(bytes: &[u8]) -> (Result<Request, Option<Response>>, Vec<u8>) {
        read_pieces(&[bytes])
    }

    fn refused_with(bytes: &[u8]) -> u16 {
        match read(bytes).0 {
            Err(Some(response)) => response.status,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_request_is_split_into_path_query_headers_and_body() {
        let (request, output) =
            read(b"POST /api/test?model=2&position=7 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n[1]\nextra");
        let request = request.unwrap();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/api/test"));
        assert_eq!(request.query_value("position"), Some("7"));
        assert_eq!(request.query_value("model"), Some("2"));
        assert_eq!(request.query_value("other"), None);
        assert_eq!(request.host.as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        // Exactly Content-Length bytes: what follows is not the body.
        assert_eq!(request.body, b"[1]\n");
        assert!(output.is_empty());
    }

    #[test]
    fn a_client_that_expects_100_continue_is_told_to_go_on_once_its_head_is_read() {
        let head: &[u8] = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (request, output) = read_pieces(&[head, b"{}"]);
        assert_eq!(request.unwrap().body, b"{}");
        assert_eq!(output, b"HTTP/1.1 100 Continue\r\n\r\n");
        // A body sent with the head needs no go-ahead.
        let (request, output) = read(&[head, b"{}"].concat());
        assert_eq!(request.unwrap().body, b"{}");
        assert!(output.is_empty());
    }

    #[test]
    fn oversized_malformed_and_chunked_requests_are_refused_before_their_bodies_are_read() {
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(refused_with(big.as_bytes()), 413);
        let long_head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(refused_with(long_head.as_bytes()), 431);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(refused_with(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), 431);
        assert_eq!(refused_with(b"GET / HTTP/1.1\r\nContent-Length: lots\r\n\r\n"), 400);
        assert_eq!(
            refused_with(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            501
        );
        assert_eq!(refused_with(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        // Read two ways: refused.
        assert_eq!(refused_with(b"GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n"), 400);
        assert_eq!(
            refused_with(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
            400
        );
        assert_eq!(refused_with(b"POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}"), 400);
        assert_eq!(
            refused_with(b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n{}"),
            501
        );
        // A client that leaves before its request is complete gets no answer.
        assert!(matches!(read(b"GET / HTT").0, Err(None)));
        assert!(matches!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").0,
            Err(None)
        ));
    }

    #[test]
    fn a_request_refused_by_its_head_is_not_told_to_send_its_body() {
        let head: &[u8] = b"POST / HTTP/1.1\r\nHost: elsewhere\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let mut exchange = Exchange {
            pieces: [head.to_vec(), b"{}".to_vec()].into(),
            output: Vec::new(),
        };
        let refusal = read_request(&mut exchange, |r| {
            (r.host.as_deref() != Some("here")).then(|| Response::error(403, "not here"))
        });
        assert!(matches!(refusal, Err(Some(Response { status: 403, .. }))));
        assert!(exchange.output.is_empty());
    }

    #[test]
    fn a_response_says_its_length_and_closes_and_the_page_gets_its_policy() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::error(404, "no such page"), false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 24\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no such page\"}"), "{text}");
        assert!(!text.contains("Content-Security-Policy"));
        let mut out = Vec::new();
        write_response(&mut out, &Response::html("<p>hi</p>"), false).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Content-Security-Policy: default-src 'none'"));
        // HEAD: the same head, no body.
        let mut out = Vec::new();
        write_response(&mut out, &Response::html("<p>hi</p>"), true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Length: 9\r\n") && text.ends_with("\r\n\r\n"),
            "{text}"
        );
    }
}
