//! Server-sent events from a generation: one writer per API turns stream
//! events into SSE events; the stream holds the request's concurrency slot
//! and, when the client leaves, dropping it tells the batcher.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use crate::infer::{Generation, StreamEvent};

/// Turns stream events into an API's SSE events.
pub trait StreamWriter: Send + 'static {
    /// The SSE events for one stream event.
    fn write(&mut self, event: StreamEvent) -> Vec<Event>;
}

/// The SSE response for `generation`.
pub fn respond<W: StreamWriter>(generation: Generation, writer: W) -> Response {
    let events = stream::unfold(Some((generation, writer)), |state| async move {
        let (mut generation, mut writer) = state?;
        let event = generation.events.recv().await.unwrap_or_else(|| {
            StreamEvent::Error("the model thread stopped before the generation ended".into())
        });
        let last = !matches!(event, StreamEvent::Token(_));
        let out = writer.write(event);
        Some((out, (!last).then_some((generation, writer))))
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(Ok::<_, Infallible>)));
    let mut response = Sse::new(events).into_response();
    // Proxies such as nginx must not buffer token streams.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

/// An SSE event whose data is `value` as JSON.
pub fn json_event<T: serde::Serialize>(value: &T) -> Event {
    // Serializing these plain structs cannot fail; an empty event is the
    // harmless fallback if it ever did.
    Event::default().data(serde_json::to_string(value).unwrap_or_default())
}
