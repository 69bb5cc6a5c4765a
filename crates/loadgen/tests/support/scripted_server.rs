//! A scripted HTTP/1.1 server for tests and the overhead benchmark: each
//! request gets a [`Reply`] from a script, written part by part with exact
//! waits (one OS thread per connection and `std::thread::sleep`, which is
//! precise to well under a millisecond, unlike a 1 ms async timer wheel).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the script sees of a request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When its last byte was read.
    pub arrived: Instant,
    /// 0 for the first request the server read.
    pub number: u64,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One step of a reply.
#[derive(Debug, Clone)]
pub enum Part {
    /// Sleep until this long after the previous step's *scheduled* time (the
    /// first step counts from the request's arrival), so sleep overshoots
    /// never add up along a stream.
    Wait(Duration),
    /// Sleep until this instant (no-op if past).
    Until(Instant),
    /// Write these bytes as one chunk (one write, one TCP segment).
    Send(Vec<u8>),
}

/// How the reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating chunk; the connection stays open for the next request.
    Finish,
    /// Close the connection without the terminating chunk.
    Close,
    /// Stop writing and keep the connection open for this long.
    Hang(Duration),
}

/// A scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
    pub end: End,
}

impl Reply {
    /// 200 with `text/event-stream`, no parts yet.
    pub fn sse() -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            parts: Vec::new(),
            end: End::Finish,
        }
    }

    /// A whole JSON body with `status`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            parts: vec![Part::Send(body.to_string().into_bytes())],
            end: End::Finish,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn wait(mut self, d: Duration) -> Self {
        self.parts.push(Part::Wait(d));
        self
    }

    pub fn until(mut self, t: Instant) -> Self {
        self.parts.push(Part::Until(t));
        self
    }

    /// Writes raw bytes as one chunk.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.parts.push(Part::Send(bytes.to_vec()));
        self
    }

    /// Writes `data: <json>\n\n` as one chunk.
    pub fn event(self, data: &serde_json::Value) -> Self {
        self.raw(format!("data: {data}\n\n").as_bytes())
    }

    pub fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; it lives until the process ends.
pub struct ScriptedServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
}

impl ScriptedServer {
    /// Listens on an ephemeral loopback port.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let script: Arc<Script> = Arc::new(script);
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (script, counter) = (script.clone(), counter.clone());
                std::thread::spawn(move || serve(conn, &*script, &counter));
            }
        });
        Self { addr, requests }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn read_request(r: &mut BufReader<TcpStream>, counter: &AtomicU64) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut it = line.split_whitespace();
    let method = it.next()?.to_string();
    let path = it.next()?.to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok()?;
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
        arrived: Instant::now(),
        number: counter.fetch_add(1, Ordering::Relaxed),
    })
}

fn serve(conn: TcpStream, script: &Script, counter: &AtomicU64) {
    let _ = conn.set_nodelay(true);
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader, counter) {
        let reply = script(&req);
        let mut head = format!(
            "HTTP/1.1 {} Scripted\r\nTransfer-Encoding: chunked\r\n",
            reply.status
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut cursor = req.arrived;
        for part in &reply.parts {
            match part {
                Part::Wait(d) => {
                    cursor += *d;
                    std::thread::sleep(cursor.saturating_duration_since(Instant::now()));
                }
                Part::Until(t) => {
                    cursor = cursor.max(*t);
                    std::thread::sleep(t.saturating_duration_since(Instant::now()));
                }
                Part::Send(bytes) => {
                    let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                    chunk.extend_from_slice(bytes);
                    chunk.extend_from_slice(b"\r\n");
                    if out.write_all(&chunk).is_err() {
                        return;
                    }
                }
            }
        }
        match reply.end {
            End::Finish => {
                if out.write_all(b"0\r\n\r\n").is_err() {
                    return;
                }
            }
            End::Close => {
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            End::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
        }
    }
}

/// TGI stream event for token `i` (1-based) of `n`; the last one carries
/// `generated_text` and `details.generated_tokens`.
pub fn tgi_token(i: u32, n: u32, text: &str) -> serde_json::Value {
    let last = i == n;
    serde_json::json!({
        "index": i,
        "token": {"id": 100 + i, "text": text, "logprob": -0.5, "special": false},
        "generated_text": if last { serde_json::Value::from("…") } else { serde_json::Value::Null },
        "details": if last {
            serde_json::json!({"finish_reason": "length", "generated_tokens": n, "seed": null})
        } else {
            serde_json::Value::Null
        },
    })
}

/// OpenAI completions chunk with `text`.
pub fn oai_text(text: &str) -> serde_json::Value {
    serde_json::json!({"object": "text_completion", "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": null}]})
}
