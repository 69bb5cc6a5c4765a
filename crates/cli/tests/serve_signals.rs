//! `servebench serve` as a process: SIGTERM during streaming requests lets
//! them all finish, then the server exits 0.

#![cfg(unix)]

#[path = "support/processes.rs"]
mod processes;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use processes::{serve, tiny_model};

/// Sends a streaming request; returns the socket once the first token
/// event has arrived, with everything read so far.
fn open_stream(addr: &str) -> (TcpStream, Vec<u8>) {
    let body = r#"{"inputs":"Once upon a time","parameters":{"max_new_tokens":150,"ignore_eos":true,"details":true}}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /generate_stream HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"token\"") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed before its first token");
        seen.extend_from_slice(&buf[..n]);
    }
    (s, seen)
}

#[test]
fn sigterm_lets_ten_streams_finish_then_exits_zero() {
    let dir = std::env::temp_dir().join(format!("servebench-signal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = tiny_model(&dir);
    let args = ["--threads", "1", "--port", "0", "--model"];
    let (mut server, addr) = serve(&[&args[..], &[model.to_str().unwrap()]].concat(), &[]);
    let child = &mut server.0;
    let streams: Vec<_> = (0..10).map(|_| open_stream(&addr)).collect();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for (i, (mut s, mut seen)) in streams.into_iter().enumerate() {
        s.read_to_end(&mut seen).unwrap();
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("\"generated_tokens\":150")
                && text.contains("\"finish_reason\":\"length\""),
            "stream {i} did not finish: ...{}",
            &text[text.len().saturating_sub(300)..]
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "still accepting after exit"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
