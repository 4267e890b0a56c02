//! One writer at a time on SQLite, first come, first served.
//!
//! SQLite has one write lock per database. A connection that finds it taken
//! waits in SQLite's busy handler, which *polls*: it sleeps 1, 2, 5, … up to
//! 100 ms between tries. The search indexer writes in transaction after
//! transaction while it catches up under load (up to
//! [`super::LIVE_INDEX_BATCH`] entries each), with only microseconds between
//! them, so a request's write that polled could miss every gap: measured
//! with `bench/submit-under-load.sh`, a one-record submission waited up to
//! 0.85–1.8 s (3.1–4.8 s with larger index transactions) behind c = 1,000
//! queries.
//!
//! Every write this process makes on SQLite therefore first takes its turn
//! at the gate: a [`tokio::sync::Mutex`], which wakes waiters in the order
//! they came. Request writes take it for their statement or transaction;
//! the indexer takes it per index transaction, so a submission waits for at
//! most the writes queued before it and one index transaction, never for
//! the indexer's whole backlog. SQLite serialises writers anyway, so the
//! gate costs no concurrency. Other processes (`credgate audit reindex`,
//! `credgate seed`) still meet the busy handler.
//!
//! The turn is always taken *before* a pool connection is acquired, never
//! while holding one: a writer holding a connection while waiting for the
//! gate could otherwise hold the last connection the writer ahead of it
//! needs. Nothing holding a turn takes another one (the mutex is not
//! reentrant).
//!
//! PostgreSQL has row locks and several nodes; it needs no gate.

use tokio::sync::{Mutex, MutexGuard};

use super::{Backend, Store};

/// The gate of one SQLite database, shared by a [`Store`]'s clones.
#[derive(Debug, Default)]
pub(crate) struct WriteGate(Mutex<()>);

/// A writer's turn; the next writer goes when it is dropped. Empty on
/// PostgreSQL.
#[must_use = "the turn ends when it is dropped"]
pub(crate) struct WriteTurn<'a>(#[allow(dead_code)] Option<MutexGuard<'a, ()>>);

impl Store {
    /// Wait for this process's turn to write (see the module docs). Take it
    /// first thing in a write, before any connection.
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        match (&self.backend, &self.gate) {
            (Backend::Sqlite(_), Some(g)) => WriteTurn(Some(g.0.lock().await)),
            _ => WriteTurn(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Writers go in the order they arrived, however many arrive while one
    /// writes: the property the indexer's fairness rests on.
    #[tokio::test]
    async fn turns_are_taken_in_arrival_order() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.0.lock().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..8 {
            let (gate, order) = (gate.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = gate.0.lock().await;
                order.lock().unwrap().push(i);
            }));
            // Let it queue before the next one is spawned (this test's
            // runtime has one thread: the waiter runs while this sleeps).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }
}
