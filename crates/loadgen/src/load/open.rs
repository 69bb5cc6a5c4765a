//! Open loop: requests are due at arrival times drawn from a schedule, sent
//! whatever the server is doing. Latency counts from the *scheduled* time, so
//! a stalled server (or a late generator) shows up in every request it
//! delayed instead of silently lowering the load (coordinated omission).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::load::{Arrival, ArrivalSchedule};
use crate::record::RequestRecord;
use crate::run::LevelCtx;

pub(crate) async fn run(ctx: Arc<LevelCtx>, rate_s: f64, arrival: Arrival, max_in_flight: u32) {
    let in_flight = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut cancel = ctx.cancel.clone();
    for offset in ArrivalSchedule::new(arrival, rate_s, ctx.seed) {
        let due = ctx.epoch + offset;
        let Some(index) = ctx.claim(due) else {
            break;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = cancel.cancelled() => break,
        }
        // Reap finished tasks so a long run does not keep every handle.
        while tasks.try_join_next().is_some() {}
        let prompt = ctx.next_prompt();
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            ctx.push(RequestRecord::dropped(
                index,
                offset,
                prompt.prompt_index,
                prompt.max_new_tokens,
            ));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (ctx, in_flight, prompt) = (ctx.clone(), in_flight.clone(), prompt.clone());
        tasks.spawn(async move {
            let record = ctx.client.send(index, &prompt, due, ctx.epoch).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            ctx.push(record);
        });
    }
    tokio::select! {
        _ = async { while tasks.join_next().await.is_some() {} } => {}
        _ = cancel.cancelled() => tasks.abort_all(),
    }
}
