//! Server-sent events from a request's generations (one, or OpenAI's `n`
//! choices interleaved as their tokens come): one writer per API turns
//! stream events into SSE events; the stream holds the requests'
//! concurrency slots and, when the client leaves, dropping it tells the
//! batcher.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use crate::infer::{Generation, StreamEvent};

/// Turns stream events into an API's SSE events.
pub trait StreamWriter: Send + 'static {
    /// The SSE events for one stream event of generation `index`.
    fn write(&mut self, index: usize, event: StreamEvent) -> Vec<Event>;

    /// The SSE events after every generation ended (or one failed).
    fn finish(&mut self) -> Vec<Event> {
        Vec::new()
    }
}

/// One generation's events tagged with its index, ending after its last.
fn events_of(
    index: usize,
    generation: Generation,
) -> impl futures_util::Stream<Item = (usize, StreamEvent)> + Send {
    stream::unfold(Some(generation), move |generation| async move {
        let mut generation = generation?;
        let event = generation.events.recv().await.unwrap_or_else(|| {
            StreamEvent::Error("the model thread stopped before the generation ended".into())
        });
        let last = !matches!(event, StreamEvent::Token(_));
        Some(((index, event), (!last).then_some(generation)))
    })
}

/// The SSE response for `generations`: their events as they come; an
/// error ends the whole stream.
pub fn respond<W: StreamWriter>(generations: Vec<Generation>, writer: W) -> Response {
    let merged = stream::select_all(
        generations
            .into_iter()
            .enumerate()
            .map(|(i, g)| events_of(i, g).boxed()),
    );
    let events = stream::unfold(Some((merged, writer)), |state| async move {
        let (mut merged, mut writer) = state?;
        match merged.next().await {
            Some((i, event)) => {
                let failed = matches!(event, StreamEvent::Error(_));
                let mut out = writer.write(i, event);
                if failed {
                    out.extend(writer.finish());
                    return Some((out, None));
                }
                Some((out, Some((merged, writer))))
            }
            None => Some((writer.finish(), None)),
        }
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
