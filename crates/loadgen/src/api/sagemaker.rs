//! A SageMaker real-time endpoint running the Hugging Face LLM container
//! (TGI): the container's TGI body sent, signed, to the SageMaker runtime's
//! `InvokeEndpoint` (`/endpoints/NAME/invocations`) or
//! `InvokeEndpointWithResponseStream` (`.../invocations-response-stream`),
//! whose body is AWS event-stream frames; each `PayloadPart` event carries
//! the container's SSE bytes, which go to the one SSE parser unchanged.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

use super::RequestParams;
use crate::error::{LoadgenError, Result};
use crate::workload::Prompt;

/// The URL scheme of `--url sagemaker://ENDPOINT_NAME?region=REGION`.
pub const SCHEME: &str = "sagemaker://";

/// The SigV4 service name of the runtime (its host is `runtime.sagemaker...`).
pub const SIGNING_SERVICE: &str = "sagemaker";

/// What `--url sagemaker://NAME?region=R` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRef {
    pub name: String,
    /// `None`: the region of the standard AWS settings.
    pub region: Option<String>,
}

impl EndpointRef {
    /// Parses `sagemaker://NAME` with an optional `?region=R`.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            LoadgenError::config(
                "--url",
                format!("`{url}`: {why} (expected sagemaker://ENDPOINT_NAME?region=us-west-2)"),
            )
        };
        let rest = url
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("not a sagemaker:// URL"))?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let name = name.trim_end_matches('/');
        if name.is_empty() {
            return Err(bad("no endpoint name"));
        }
        let mut region = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("region", r)) if !r.is_empty() => region = Some(r.to_string()),
                _ => return Err(bad(&format!("unknown query `{pair}`"))),
            }
        }
        Ok(Self {
            name: name.to_string(),
            region,
        })
    }

    /// The base URL requests go under: `{runtime}/endpoints/{name}`, the
    /// name percent-encoded as one path segment. `endpoint_url` replaces
    /// `https://runtime.sagemaker.{region}.amazonaws.com` (tests, VPC endpoints).
    pub fn base_url(&self, endpoint_url: Option<&str>, region: &str) -> Result<String> {
        let root = endpoint_url.map_or_else(
            || format!("https://runtime.sagemaker.{region}.amazonaws.com"),
            str::to_string,
        );
        let mut url = reqwest::Url::parse(&root)
            .map_err(|e| LoadgenError::config("--aws-endpoint-url", format!("`{root}`: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| LoadgenError::config("--aws-endpoint-url", format!("`{root}`")))?
            .pop_if_empty()
            .push("endpoints")
            .push(&self.name);
        Ok(url.to_string())
    }
}

/// The container's TGI body; `stream` picks SSE, as `/invocations` routes it.
pub(super) fn body(prompt: &Prompt, p: &RequestParams) -> serde_json::Value {
    let mut body = super::tgi::body(prompt, p);
    body["stream"] = p.stream.into();
    body
}

/// Turns the runtime's event-stream body back into the container's bytes.
#[derive(Debug, Default)]
pub struct PayloadParts {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
}

impl PayloadParts {
    /// A decoder at the start of a response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network read; returns the payload bytes of every
    /// `PayloadPart` event it completes, in order. An exception event
    /// (`ModelStreamError`, `InternalStreamFailure`) is the error's text.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut parts = Vec::new();
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    if let Some(payload) = payload_of(&message)? {
                        parts.push(payload);
                    }
                }
                Ok(DecodedFrame::Incomplete) => return Ok(parts),
                Err(e) => return Err(format!("not an AWS event stream: {e}")),
            }
        }
    }

    /// Whether a frame was cut off (a stream that closes here is broken).
    pub fn is_mid_frame(&self) -> bool {
        self.buffer.has_remaining()
    }
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The bytes a `PayloadPart` event carries; `None` for events without any.
fn payload_of(message: &Message) -> Result<Option<Bytes>, String> {
    match header(message, ":message-type") {
        Some("event") => Ok((header(message, ":event-type") == Some("PayloadPart"))
            .then(|| message.payload().clone())),
        Some("exception") | Some("error") => {
            let kind = header(message, ":exception-type")
                .or_else(|| header(message, ":error-code"))
                .unwrap_or("error");
            Err(format!(
                "{kind}: {}",
                String::from_utf8_lossy(message.payload())
            ))
        }
        other => Err(format!("event-stream message of type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn frame(kind: &str, name: &str, payload: &[u8]) -> Vec<u8> {
        let (type_header, name_header) = if kind == "event" {
            (":event-type", name)
        } else {
            (":exception-type", name)
        };
        let m = Message::new(Bytes::copy_from_slice(payload))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(kind.to_string().into()),
            ))
            .add_header(Header::new(
                type_header,
                HeaderValue::String(name_header.to_string().into()),
            ));
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }

    #[test]
    fn payload_parts_come_out_once_however_the_reads_split() {
        let mut wire = frame("event", "PayloadPart", b"data: {\"a\":1}\n\n");
        wire.extend(frame("event", "PayloadPart", b"data: {\"b\":2}\n\n"));
        for cut in 0..wire.len() {
            let mut d = PayloadParts::new();
            let mut out = d.feed(&wire[..cut]).unwrap();
            out.extend(d.feed(&wire[cut..]).unwrap());
            let joined: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(
                joined, b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n",
                "cut {cut}"
            );
            assert!(!d.is_mid_frame());
        }
        let mut d = PayloadParts::new();
        d.feed(&wire[..5]).unwrap();
        assert!(d.is_mid_frame());
    }

    #[test]
    fn exceptions_are_errors() {
        let mut d = PayloadParts::new();
        let e = d
            .feed(&frame(
                "exception",
                "ModelStreamError",
                b"{\"Message\":\"boom\"}",
            ))
            .unwrap_err();
        assert!(e.contains("ModelStreamError") && e.contains("boom"), "{e}");
        assert!(PayloadParts::new().feed(&[0u8; 16]).is_err());
    }

    #[test]
    fn urls_name_the_endpoint_and_region() {
        let e = EndpointRef::parse("sagemaker://llama-2-7b?region=us-west-2").unwrap();
        assert_eq!(e.region.as_deref(), Some("us-west-2"));
        assert_eq!(
            e.base_url(None, "us-west-2").unwrap(),
            "https://runtime.sagemaker.us-west-2.amazonaws.com/endpoints/llama-2-7b"
        );
        let odd = EndpointRef::parse("sagemaker://my endpoint/ü").unwrap();
        assert_eq!(odd.region, None);
        assert_eq!(
            odd.base_url(Some("http://127.0.0.1:9/"), "eu-west-1")
                .unwrap(),
            "http://127.0.0.1:9/endpoints/my%20endpoint%2F%C3%BC"
        );
        assert!(EndpointRef::parse("http://x").is_err());
        assert!(EndpointRef::parse("sagemaker://?region=x").is_err());
        assert!(EndpointRef::parse("sagemaker://e?zone=x").is_err());
    }
}
