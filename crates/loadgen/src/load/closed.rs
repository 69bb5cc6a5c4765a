//! Closed loop: `concurrency` virtual users; a user's next request is
//! scheduled the moment its previous one ended (k6 constant-VUs).

use std::sync::Arc;
use std::time::Instant;

use crate::run::LevelCtx;

pub(crate) async fn run(ctx: Arc<LevelCtx>, concurrency: u32) {
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        users.spawn(async move {
            let mut cancel = ctx.cancel.clone();
            loop {
                let scheduled = Instant::now();
                let Some(index) = ctx.claim(scheduled) else {
                    break;
                };
                let prompt = ctx.next_prompt();
                let record = tokio::select! {
                    r = ctx.client.send(index, prompt, scheduled, ctx.epoch) => r,
                    _ = cancel.cancelled() => break,
                };
                ctx.push(record);
            }
        });
    }
    while users.join_next().await.is_some() {}
}
