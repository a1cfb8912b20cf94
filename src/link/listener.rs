//! The accept loop: every connection gets a slot in a bounded table of handshakes
//! ([`crate::link::admission`]), a short deadline for its ClientHello and a longer one for
//! the rest. A crowd of strangers can push only itself out, never the pinned peer
//! once its ClientHello has knocked ([`crate::link::knock`]), and it is reported in
//! summary ([`crate::link::rejections`]), not line by line.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

use crate::link::addresses;
use crate::link::admission::{Admission, Full, Limits, Shed, SlotId};
use crate::link::handshake::{self, Greeting, HandshakeError, Link, Stage};
use crate::link::knock::Doorman;
use crate::link::rejections::Rejections;
use crate::link::tls::{self, PinMismatch};
use crate::link::{Route, Stream};
use crate::session::event::Event;

/// Handshakes in progress at once. A newcomer beyond it takes the slot of an
/// unauthenticated one (see [`crate::link::admission`]), so this bounds memory and file
/// descriptors, not who gets in.
pub const MAX_PENDING_HANDSHAKES: usize = 128;
/// Unauthenticated handshakes in progress from one address (one IPv6 /64): a
/// crowd needs at least 16 addresses to fill the table, and the real peer's address
/// never has to share its slots with more than 7 strangers.
pub const MAX_PENDING_PER_ADDRESS: usize = 8;

/// Connections accepted this soon after serving began were waiting in the backlog.
const BACKLOG_DRAINED_AFTER: Duration = Duration::from_secs(1);

/// The session listener's bounds, which the pairing listener shares.
pub const LIMITS: Limits = Limits {
    slots: MAX_PENDING_HANDSHAKES,
    per_address: MAX_PENDING_PER_ADDRESS,
};

/// The handshakes in progress, each with the handle that stops its task.
pub type Table = Arc<Mutex<Admission<AbortHandle>>>;

/// An empty table with `limits`.
pub fn table(limits: Limits) -> Table {
    Arc::new(Mutex::new(Admission::new(limits)))
}

/// Accepts connections until the task is dropped, sending each authenticated link to `links`.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    greeting: Greeting,
    doorman: Doorman,
    links: mpsc::Sender<Link>,
    events: mpsc::UnboundedSender<Event>,
) {
    let table = table(LIMITS);
    let serving_since = Instant::now();
    let reporter = Arc::new(Reporter::new(events));
    let greeting = Arc::new(greeting);
    let doorman = Arc::new(doorman);
    loop {
        let summary_due = reporter.summary_due();
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors or a connection reset before accept:
                    // pause briefly rather than spin, and keep serving.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = tokio::time::sleep_until(summary_due.unwrap_or_else(Instant::now).into()),
                if summary_due.is_some() => {
                reporter.summarise();
                continue;
            }
            // A handshake task started counting; look again at when the summary is due.
            () = reporter.counting.notified(), if summary_due.is_none() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let addr = addresses::canonical(addr);
        let start = Handshake {
            waited_in_backlog: serving_since.elapsed() < BACKLOG_DRAINED_AFTER,
            acceptor: acceptor.clone(),
            greeting: greeting.clone(),
            doorman: doorman.clone(),
            links: links.clone(),
            reporter: reporter.clone(),
        };
        admit(&table, &reporter, tcp, addr, start);
        // Let the handshakes run before the next accept. Accepting is quick and a
        // crowd keeps the backlog full, so without this the loop could accept (and
        // shed for) a hundred connections in one go before the newest handshake has
        // read the ClientHello already waiting in its socket. It would then look
        // silent, and be the oldest silent one, exactly when the next ones arrive.
        tokio::task::yield_now().await;
    }
}

/// Gives the connection a slot (shedding someone if need be) and starts its handshake.
fn admit(table: &Table, reporter: &Reporter, tcp: TcpStream, addr: SocketAddr, start: Handshake) {
    match take_slot(table, addr, |slot| {
        tokio::spawn(start.run(tcp, addr, slot)).abort_handle()
    }) {
        Ok(Some(shed)) => reporter.reject(shed.addr, &shed, None),
        Ok(None) => {}
        Err(full) => reporter.reject(addr, full, None),
    }
}

/// Gives a connection from `addr` a slot in `table`, stopping the handshake shed to
/// make room (returned, to be reported), and starts the new one with `start`, which
/// returns the handle that stops it. Started and attached under the table's lock:
/// nothing can shed it before it has a handle.
pub fn take_slot(
    table: &Table,
    addr: SocketAddr,
    start: impl FnOnce(Slot) -> AbortHandle,
) -> Result<Option<Shed<AbortHandle>>, Full> {
    let mut slots = lock(table);
    let admitted = slots.admit(addr)?;
    if let Some(task) = admitted.shed.as_ref().and_then(|shed| shed.handle.as_ref()) {
        task.abort();
    }
    let slot = Slot {
        table: table.clone(),
        id: admitted.id,
    };
    let task = start(slot);
    slots.attach(admitted.id, task);
    Ok(admitted.shed)
}

/// What one handshake task needs besides its connection.
struct Handshake {
    /// Accepted as we began serving: it was made while we were not yet listening
    /// for real (at our prompts), and its sender may long have given up.
    waited_in_backlog: bool,
    acceptor: TlsAcceptor,
    greeting: Arc<Greeting>,
    doorman: Arc<Doorman>,
    links: mpsc::Sender<Link>,
    reporter: Arc<Reporter>,
}

impl Handshake {
    async fn run(self, tcp: TcpStream, addr: SocketAddr, slot: Slot) {
        let result = handshake::accept(
            &self.acceptor,
            Stream::Tcp(tcp),
            Route::Tcp(addr),
            &self.greeting,
            Some(&self.doorman),
            |stage| slot.reached(stage),
        )
        .await;
        drop(slot);
        match result {
            Ok(link) => {
                let _ = self.links.send(link).await;
            }
            // Reported when it was shed.
            Err(HandshakeError::Shed) => {}
            // The pinned peer's early attempts, which it gave up while we were at
            // our prompts, are not an attack; it has retried since.
            Err(err) if self.waited_in_backlog && err.is_closed_by_client() => {
                let _ = self.reporter.events.send(Event::GaveUpWaiting { addr });
            }
            Err(err) => {
                let mismatch = err.io_error().and_then(tls::pin_mismatch).cloned();
                self.reporter.reject(addr, err, mismatch);
            }
        }
    }
}

/// A handshake's place in the table, given back when the task ends or is aborted.
pub struct Slot {
    table: Table,
    id: SlotId,
}

impl Slot {
    /// Records that the handshake reached `stage`; false if it was shed meanwhile.
    pub fn reached(&self, stage: Stage) -> bool {
        lock(&self.table).advance(self.id, stage)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.table).release(self.id);
    }
}

/// Sends `Rejected` events through the rate limit, and the summaries it owes.
struct Reporter {
    rejections: Mutex<Rejections>,
    events: mpsc::UnboundedSender<Event>,
    /// Signalled when a window starts counting, so that the accept loop, which
    /// owns the timer, wakes up to schedule its summary.
    counting: Notify,
}

impl Reporter {
    fn new(events: mpsc::UnboundedSender<Event>) -> Self {
        Reporter {
            rejections: Mutex::new(Rejections::default()),
            events,
            counting: Notify::new(),
        }
    }

    fn reject(&self, addr: SocketAddr, reason: impl Display, mismatch: Option<PinMismatch>) {
        let mut rejections = lock(&self.rejections);
        let recorded = rejections.record(Instant::now());
        if let Some(summary) = recorded.summary {
            self.send_summary(summary);
        }
        if recorded.tell {
            let _ = self.events.send(Event::Rejected {
                addr,
                reason: reason.to_string(),
                mismatch,
            });
        } else if rejections.just_started_counting() {
            self.counting.notify_one();
        }
    }

    fn summary_due(&self) -> Option<Instant> {
        lock(&self.rejections).summary_due()
    }

    fn summarise(&self) {
        if let Some(summary) = lock(&self.rejections).close_window(Instant::now()) {
            self.send_summary(summary);
        }
    }

    fn send_summary(&self, summary: crate::link::rejections::Summary) {
        let _ = self.events.send(Event::RejectedMore {
            count: summary.count,
            window: summary.window,
        });
    }
}

/// A panic while holding the lock ends the program (see `app`), so a poisoned
/// lock is never seen in practice; its data is still consistent between calls.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
