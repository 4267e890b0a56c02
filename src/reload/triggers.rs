//! What starts a reload without a request: SIGHUP, the CRL timer and a
//! CRL's `nextUpdate`.
//!
//! SIGHUP's handler is installed by the binary before anything else
//! happens at start ([`Hangup::install`], before the configuration is
//! read, the store migrated or a socket bound): without it, a SIGHUP
//! during startup — a configuration-management tool reloading right after
//! starting the service — would meet the default action and end the
//! process. A SIGHUP that arrives before the gateway serves is queued (the
//! signal stream keeps it) and becomes one reload as soon as the gateway
//! serves, logged as such; several are one reload.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Live, Trigger};

/// The SIGHUP stream, installed once per process, as early as possible.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Install the handler now (inside the runtime). From here on a SIGHUP
    /// no longer ends the process; one received before the gateway serves
    /// waits in the stream. If it cannot be installed, a warning says to
    /// reload with `credgate reload`.
    pub fn install() -> Hangup {
        #[cfg(unix)]
        {
            let signal = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload with `credgate reload`");
                    None
                }
            };
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// The next SIGHUP (never, without a handler).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(h) = self.signal.as_mut() {
            h.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }

    /// Whether a SIGHUP is already waiting (consumes it).
    fn received(&mut self) -> bool {
        #[cfg(unix)]
        if let Some(h) = self.signal.as_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            return matches!(h.poll_recv(&mut cx), Poll::Ready(Some(())));
        }
        false
    }
}

/// Reload on SIGHUP, and refresh the CRLs on the timer and at their
/// `nextUpdate`, until `stop` turns true.
///
/// `hangup` is the handler the binary installed at its start; without one
/// (the tests' in-process gateways) it is installed here, before this
/// returns and so before the gateway accepts its first connection. A
/// SIGHUP the stream already holds (it arrived during startup) is one
/// reload right away.
pub fn spawn_triggers(
    live: Arc<Live>,
    hangup: Option<Hangup>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut hup = hangup.unwrap_or_else(Hangup::install);
    tokio::spawn(async move {
        if hup.received() {
            tracing::info!("SIGHUP received during startup: reloading now that the gateway serves");
            live.reload(Trigger::Signal).await;
        }
        let mut tick = tokio::time::interval(live.crl_refresh());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // The nextUpdate already acted on (a stale CRL is re-read once, then
        // left to the timer).
        let mut handled: Option<SystemTime> = None;
        loop {
            let next_update = live
                .tls
                .load()
                .crl_next_update
                .filter(|t| Some(*t) != handled);
            let until = next_update.map(|t| {
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            let at_next_update = async {
                match until {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                () = hup.recv() => {
                    live.reload(Trigger::Signal).await;
                }
                _ = tick.tick() => {
                    live.refresh_crls(Trigger::CrlRefresh).await;
                }
                () = at_next_update => {
                    handled = next_update;
                    live.refresh_crls(Trigger::CrlNextUpdate).await;
                }
            }
        }
    })
}
