//! A request's handling, run inline on its connection until the client
//! goes away, and handed to a task of its own only then.
//!
//! Every request must reach its audit entry (and a submission its commit or
//! refusal) even when the client hangs up: hyper then drops the service
//! future. Spawning a task per request guarantees that, but costs a task
//! allocation, a registration in the runtime's task list, a scheduling round
//! and a cross-task wake-up on every request, to cover the rare request
//! whose client leaves. [`FinishOnDrop`] polls the handling in place and,
//! only if it is dropped unfinished, spawns the rest of it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `fut`, polled in place; if dropped before it completes, the rest of it
/// runs to completion on a task of its own (see the module docs).
pub(super) struct FinishOnDrop<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    fut: Option<Pin<Box<F>>>,
    /// Set while `fut` is being polled: a panic escaping the poll leaves it
    /// set, and a future that panicked is not polled again.
    polling: bool,
}

impl<F: Future + Send + 'static> FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    pub(super) fn new(fut: F) -> Self {
        FinishOnDrop {
            fut: Some(Box::pin(fut)),
            polling: false,
        }
    }
}

impl<F: Future + Send + 'static> Future for FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `FinishOnDrop` is `Unpin` (the future is boxed).
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            panic!("FinishOnDrop polled after completion");
        };
        this.polling = true;
        let out = fut.as_mut().poll(cx);
        this.polling = false;
        if out.is_ready() {
            this.fut = None;
        }
        out
    }
}

impl<F: Future + Send + 'static> Drop for FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else { return };
        if self.polling {
            // Unwinding out of its own poll: the panic is the outcome.
            return;
        }
        // Without a runtime (it is shutting down) there is nothing to run
        // the rest on; shutdown waits for in-flight requests before that.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                fut.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_in_place_when_awaited() {
        let out = FinishOnDrop::new(async { 7 }).await;
        assert_eq!(out, 7);
    }

    #[tokio::test]
    async fn dropped_unfinished_it_still_finishes() {
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        let fut = FinishOnDrop::new(async move {
            // Still pending when the waiter goes away.
            let _ = rx.await;
            d.store(true, Ordering::Release);
        });
        // Poll once (pending), then drop, as hyper does when a client hangs up.
        tokio::select! {
            biased;
            () = fut => unreachable!("the channel is still open"),
            () = tokio::task::yield_now() => {}
        }
        assert!(!done.load(Ordering::Acquire));
        tx.send(()).unwrap();
        for _ in 0..100 {
            if done.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the dropped handling never finished");
    }

    #[tokio::test]
    async fn dropped_before_the_first_poll_it_still_runs() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        drop(FinishOnDrop::new(async move {
            let _ = tx.send(1);
        }));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .unwrap(),
            Ok(1)
        );
    }
}
