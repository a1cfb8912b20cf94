//! The sender's side of transfers: a queue of files and folders, offered, streamed
//! and judged one at a time. A file goes before it is hashed where the receiver
//! takes an `OfferUnhashed` (protocol version 8 on), and is hashed as it streams;
//! folders, and files for older receivers, are hashed first, a few at a time while
//! earlier ones stream (a file queued before such a receiver was met, when it
//! reaches the head).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::hash_cache::SharedHashCache;
use super::outgoing::{PreparedFile, ReadChunks, SendError};
use super::outgoing_folder::{Listing, PreparedFolder};
use super::progress::ProgressReporter;
use super::{CANCELLED_BY_RECEIVER, CANCELLED_BY_SENDER, TransferViolation, human_bytes, truncate};
use crate::frame::{
    CREDIT_WINDOW, Frame, MAX_CHUNK_LEN, VerdictStatus, takes_credit, takes_folders,
    takes_unhashed_offers,
};
use crate::session::event::{Event, Phase};

/// What one transfer sends: a file, or a folder with everything in it.
#[derive(Debug, Clone)]
enum Prepared {
    File(PreparedFile),
    Folder(PreparedFolder),
}

impl Prepared {
    fn name(&self) -> &str {
        match self {
            Prepared::File(file) => &file.name,
            Prepared::Folder(folder) => &folder.name,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Prepared::File(file) => file.size,
            Prepared::Folder(folder) => folder.size,
        }
    }

    /// Its bytes from `offset` on, and for a file not yet hashed, the SHA-256 that
    /// comes after them (kept in `cache`).
    fn stream(
        &self,
        offset: u64,
        cache: Option<SharedHashCache>,
    ) -> (ReadChunks, Option<oneshot::Receiver<[u8; 32]>>) {
        match self {
            Prepared::File(file) if file.sha256.is_none() => {
                let (chunks, digest) = file.stream_hashing(offset, cache);
                (chunks, Some(digest))
            }
            Prepared::File(file) => (file.stream(offset), None),
            Prepared::Folder(folder) => (folder.stream(offset), None),
        }
    }

    /// The SHA-256 computed as the file was sent: from now on it is offered with it.
    fn hashed_as_sent(&mut self, sha256: [u8; 32]) {
        if let Prepared::File(file) = self {
            file.sha256 = Some(sha256);
            file.hash_was_cached = false;
        }
    }

    /// A file offered before it was hashed, whose SHA-256 is not known yet.
    fn is_unhashed(&self) -> bool {
        matches!(self, Prepared::File(file) if file.sha256.is_none())
    }

    /// The frames that offer it: an `Offer` or `OfferUnhashed`, or a `Folder` and
    /// its manifest.
    fn offer(&self, id: u64) -> VecDeque<Frame> {
        match self {
            Prepared::File(file) => VecDeque::from([match file.sha256 {
                Some(sha256) => Frame::Offer {
                    id,
                    size: file.size,
                    sha256,
                    name: file.name.clone(),
                },
                None => Frame::OfferUnhashed {
                    id,
                    size: file.size,
                    name: file.name.clone(),
                },
            }]),
            Prepared::Folder(folder) => {
                let header = Frame::Folder {
                    id,
                    entries: folder.entries,
                    manifest_len: u32::try_from(folder.manifest.len())
                        .expect("a listing stops at MAX_MANIFEST_LEN"),
                    size: folder.size,
                    name: folder.name.clone(),
                };
                let parts = folder
                    .manifest
                    .chunks(MAX_CHUNK_LEN)
                    .map(|data| Frame::Manifest {
                        id,
                        data: data.to_vec(),
                    });
                std::iter::once(header).chain(parts).collect()
            }
        }
    }
}

/// A file or folder waiting its turn, measured meanwhile and, unless it is a file
/// that goes before its hash, hashed, once a slot is free.
struct Queued {
    id: u64,
    name: String,
    hashing: JoinHandle<Result<Prepared, SendError>>,
}

/// The transfer on the wire now.
enum Head {
    Hashing(Queued),
    /// Hashed; to be offered on the current or next connection (again, after a drop).
    Ready(u64, Prepared),
    Offered(u64, Prepared),
    Streaming {
        id: u64,
        file: Prepared,
        chunks: ReadChunks,
        /// For a file offered before it was hashed: its SHA-256, for the `Digest`
        /// after the last chunk, until that is sent.
        digest: Option<oneshot::Receiver<[u8; 32]>>,
        progress: ProgressReporter,
        sent: u64,
    },
    AwaitingVerdict(u64, Prepared),
}

/// All outgoing transfers of one session.
pub struct Sending {
    next_id: u64,
    queue: VecDeque<Queued>,
    head: Option<Head>,
    /// Where the receiver said the head's data starts (non-zero when resuming).
    head_offset: u64,
    /// The protocol version of the current connection.
    version: u16,
    /// The peer we are connected to needs every file's SHA-256 in its offer (an
    /// older `chat`): files are hashed as soon as they are queued.
    hash_ahead: bool,
    /// On a connection of a version with `Credit`: how much file data it carried
    /// and how much the receiver lets it carry.
    credit: Option<Credit>,
    /// The head was cancelled while offered: cancel it once the receiver accepts.
    cancel_on_accept: Option<u64>,
    /// A `Cancel` to write before anything else.
    pending_cancel: Option<Frame>,
    /// The rest of an offer that takes several frames (a folder's manifest).
    offering: VecDeque<Frame>,
    /// Transfers we cancelled on the wire: a `Verdict` the receiver sent before it
    /// read our `Cancel` (its own cancel, a write error) may still arrive for them.
    cancelled: VecDeque<u64>,
    /// Hashes of files sent before, so that an unchanged file is not read twice.
    hash_cache: Option<SharedHashCache>,
    /// Files hashed at once: each holds a thread and an open file.
    hashing_slots: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
}

/// How much file data a connection of a version with `Credit` carried, and how much
/// the receiver lets it carry in all.
#[derive(Debug)]
struct Credit {
    sent: u64,
    limit: u64,
}

impl Default for Credit {
    fn default() -> Self {
        Credit {
            sent: 0,
            limit: CREDIT_WINDOW,
        }
    }
}

impl Credit {
    /// Whether the next chunk could take the connection past its limit.
    fn spent(&self) -> bool {
        self.sent + MAX_CHUNK_LEN as u64 > self.limit
    }
}

/// How many cancelled transfers a crossing `Verdict` is forgiven for.
const MAX_CANCELLED_REMEMBERED: usize = 64;
/// Files hashed at the same time, however many are queued: the next ones are
/// hashed while earlier ones stream, with threads and open files bounded.
const HASHING_AT_ONCE: usize = 2;
/// Said when the offer's SHA-256 comes from the hash cache.
const HASH_WAS_CACHED: &str = "unchanged since it was last hashed; not hashed again";
/// Said when the receiver already has a file whose hash the offer took from the cache.
const RECHECKING_CACHED_HASH: &str = "the peer already has a file with the SHA-256 kept from an earlier hashing; reading this file again to be sure it is the same";

impl Sending {
    pub fn new(events: mpsc::UnboundedSender<Event>, hash_cache: Option<SharedHashCache>) -> Self {
        Sending {
            next_id: 1,
            queue: VecDeque::new(),
            head: None,
            head_offset: 0,
            credit: None,
            version: 1,
            hash_ahead: false,
            cancel_on_accept: None,
            pending_cancel: None,
            offering: VecDeque::new(),
            cancelled: VecDeque::new(),
            hash_cache,
            hashing_slots: Arc::new(Semaphore::new(HASHING_AT_ONCE)),
            events,
        }
    }

    /// A new connection carries the transfers from now on.
    pub fn connected(&mut self, version: u16) {
        self.version = version;
        self.hash_ahead = !takes_unhashed_offers(version);
        self.credit = takes_credit(version).then(Credit::default);
    }

    /// Handles the receiver's `Credit`: the file data this connection may carry in all.
    pub fn credited(&mut self, limit: u64) -> Result<(), TransferViolation> {
        let credit = self
            .credit
            .as_mut()
            .ok_or(TransferViolation::NotInVersion("Credit"))?;
        if limit < credit.limit {
            return Err(TransferViolation::CreditShrank {
                limit,
                before: credit.limit,
            });
        }
        credit.limit = limit;
        Ok(())
    }

    /// Queues `path` and starts measuring it on a blocking thread, and hashing it if
    /// it is a folder or the peer needs the hash in the offer.
    pub fn enqueue(&mut self, path: PathBuf) {
        let id = self.next_id;
        self.next_id += 1;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let (events, queued_name) = (self.events.clone(), name.clone());
        let hash_cache = self.hash_cache.clone();
        let slots = self.hashing_slots.clone();
        let hash_ahead = self.hash_ahead;
        let hashing = tokio::spawn(async move {
            // Files are hashed in the order queued, a few at a time; the slot is
            // held by the thread itself, so an aborted wait never frees it early.
            let Ok(slot) = slots.acquire_owned().await else {
                return Err(SendError::Stopped("the session ended".into()));
            };
            // Even the size is asked of the file system off the async runtime.
            let hashed = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let metadata = std::fs::metadata(&path);
                // What is neither a folder nor a file is refused at once; one that
                // takes the path's place after this look is refused when opened.
                if metadata.as_ref().is_ok_and(|m| !m.is_dir() && !m.is_file()) {
                    return Err(SendError::NotAFile(path));
                }
                if metadata.as_ref().is_ok_and(|metadata| metadata.is_dir()) {
                    let listing = Listing::of(&path)?;
                    let _ = events.send(Event::TransferQueued {
                        id,
                        name: queued_name,
                        size: listing.size,
                    });
                    let mut progress =
                        ProgressReporter::new(events, id, Phase::Hashing, listing.size);
                    return listing
                        .hash(hash_cache.as_ref(), |done| progress.update(done))
                        .map(Prepared::Folder);
                }
                let size = metadata.map_or(0, |metadata| metadata.len());
                let _ = events.send(Event::TransferQueued {
                    id,
                    name: queued_name,
                    size,
                });
                if !hash_ahead {
                    return PreparedFile::measure(&path, hash_cache.as_ref()).map(Prepared::File);
                }
                let progress = ProgressReporter::new(events, id, Phase::Hashing, size);
                hash_file(&path, hash_cache.as_ref(), progress, false)
            });
            hashed
                .await
                .unwrap_or_else(|err| Err(SendError::Stopped(err.to_string())))
        });
        self.queue.push_back(Queued { id, name, hashing });
    }

    /// True when nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.head.is_none() && self.queue.is_empty()
    }

    /// The next frame to write: an `Offer`, a `Chunk` or a `Cancel`. Waits while
    /// there is nothing to send. Cancel-safe, so it can sit in a `select!`.
    pub async fn next_frame(&mut self) -> Frame {
        if let Some(cancel) = self.pending_cancel.take() {
            return cancel;
        }
        if let Some(part) = self.offering.pop_front() {
            return part;
        }
        loop {
            match &mut self.head {
                None => match self.queue.pop_front() {
                    Some(queued) => self.head = Some(Head::Hashing(queued)),
                    None => return std::future::pending().await,
                },
                Some(Head::Hashing(queued)) => {
                    let result = (&mut queued.hashing).await;
                    let Some(Head::Hashing(queued)) = self.head.take() else {
                        unreachable!("head checked above");
                    };
                    match result {
                        Ok(Ok(file)) => {
                            self.note_preparation(queued.id, &file);
                            self.head = Some(Head::Ready(queued.id, file));
                        }
                        Ok(Err(err)) => self.fail(queued.id, &queued.name, err.to_string()),
                        Err(err) => {
                            self.fail(queued.id, &queued.name, format!("hashing stopped: {err}"))
                        }
                    }
                }
                Some(Head::Streaming { file, sent, .. })
                    if *sent < file.size() && self.credit.as_ref().is_some_and(Credit::spent) =>
                {
                    // Until the receiver's `Credit`, which ends this wait. Only data
                    // waits for it: a `Digest` after the last chunk does not.
                    return std::future::pending().await;
                }
                Some(Head::Streaming {
                    id,
                    file,
                    chunks,
                    digest,
                    progress,
                    sent,
                }) => match chunks.recv().await {
                    Some(Ok(data)) => {
                        if let Some(credit) = &mut self.credit {
                            credit.sent += data.len() as u64;
                        }
                        *sent += data.len() as u64;
                        progress.update(*sent);
                        return Frame::Chunk { id: *id, data };
                    }
                    Some(Err(err)) => {
                        let id = *id;
                        return self.give_up(id, err.to_string());
                    }
                    None => {
                        // Sent by the reading thread before its queue ended.
                        if let Some(hashed) = digest {
                            let hashed = hashed.await;
                            *digest = None;
                            if let Ok(sha256) = hashed {
                                file.hashed_as_sent(sha256);
                                return Frame::Digest { id: *id, sha256 };
                            }
                            let id = *id;
                            return self.give_up(id, "its SHA-256 was not computed".into());
                        }
                        let Some(Head::Streaming { id, file, .. }) = self.head.take() else {
                            unreachable!("head checked above");
                        };
                        self.head = Some(Head::AwaitingVerdict(id, file));
                    }
                },
                Some(Head::Ready(..)) => {
                    let Some(Head::Ready(id, file)) = self.head.take() else {
                        unreachable!("head checked above");
                    };
                    if matches!(file, Prepared::Folder(_)) && !takes_folders(self.version) {
                        let err = SendError::FoldersUnsupported(self.version);
                        self.fail(id, file.name(), err.to_string());
                        continue;
                    }
                    if let Prepared::File(unhashed @ PreparedFile { sha256: None, .. }) = &file
                        && !takes_unhashed_offers(self.version)
                    {
                        // An older receiver needs the SHA-256 in the offer.
                        let queued = self.hash_first(id, unhashed, false);
                        self.head = Some(Head::Hashing(queued));
                        continue;
                    }
                    self.offering = file.offer(id);
                    self.head = Some(Head::Offered(id, file));
                    return self
                        .offering
                        .pop_front()
                        .expect("an offer has a first frame");
                }
                Some(Head::Offered(..) | Head::AwaitingVerdict(..)) => {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// The receiver accepted offer `id`; start streaming from `offset`.
    pub fn accepted(&mut self, id: u64, offset: u64) -> Result<(), TransferViolation> {
        let Some(Head::Offered(offered, file)) = self
            .head
            .take_if(|head| matches!(head, Head::Offered(o, _) if *o == id))
        else {
            return Err(TransferViolation::UnknownId {
                frame: "Accept",
                id,
            });
        };
        if offset > file.size() {
            // The connection is closed for this; the file must still end visibly.
            let violation = TransferViolation::BadOffset {
                id,
                offset,
                size: file.size(),
            };
            self.fail(id, file.name(), format!("not sent: {violation}"));
            return Err(violation);
        }
        if offset > 0 {
            self.note(
                offered,
                file.name(),
                format!("resuming at {}", human_bytes(offset)),
            );
        }
        // Too late only once every byte is held, and the hash too if it follows.
        if self.cancel_on_accept.take() == Some(id) && (offset < file.size() || file.is_unhashed())
        {
            self.cancelled_here(id, file.name());
            self.cancel_on_the_wire(id);
            return Ok(());
        }
        self.head_offset = offset;
        let mut progress =
            ProgressReporter::new(self.events.clone(), offered, Phase::Sending, file.size());
        if let Prepared::Folder(folder) = &file {
            progress = progress.with_files(folder.file_list());
        }
        progress.update(offset);
        let (chunks, digest) = file.stream(offset, self.hash_cache.clone());
        self.head = Some(Head::Streaming {
            id: offered,
            chunks,
            digest,
            file,
            progress,
            sent: offset,
        });
        Ok(())
    }

    /// The person cancelled transfer `id`, queued or on its way. Says why not when
    /// it is too late: every byte was sent, and the receiver is verifying them.
    pub fn cancel(&mut self, id: u64) {
        if let Err(why) = self.try_cancel(id) {
            let _ = self.events.send(Event::Note { text: why });
        }
    }

    fn try_cancel(&mut self, id: u64) -> Result<(), String> {
        if let Some(at) = self.queue.iter().position(|queued| queued.id == id) {
            let queued = self.queue.remove(at).expect("found above");
            queued.hashing.abort();
            self.cancelled_here(id, &queued.name);
            return Ok(());
        }
        let Some(head) = self.head.take_if(|head| head.id() == Some(id)) else {
            return Err(format!("no file is being sent as transfer {id}"));
        };
        let name = head.name();
        match head {
            Head::Hashing(queued) => queued.hashing.abort(),
            Head::Ready(..) => {}
            Head::Offered(..) => {
                self.cancel_on_accept = Some(id);
                self.head = Some(head);
                self.note(
                    id,
                    &name,
                    "cancelling once the peer answers the offer".into(),
                );
                return Ok(());
            }
            Head::Streaming { .. } if !head.all_sent() => {
                self.cancel_on_the_wire(id);
            }
            Head::Streaming { .. } | Head::AwaitingVerdict(..) => {
                self.head = Some(head);
                return Err(format!(
                    "too late to cancel {name}: every byte was sent, and the peer is verifying it"
                ));
            }
        }
        self.cancelled_here(id, &name);
        Ok(())
    }

    /// Queues our `Cancel` for `id`, and remembers it for a crossing `Verdict`.
    fn cancel_on_the_wire(&mut self, id: u64) {
        self.pending_cancel = Some(Frame::Cancel {
            id,
            reason: CANCELLED_BY_SENDER.into(),
        });
        self.remember_cancelled(id);
    }

    /// The head, `id`, cannot be sent on: it fails here, and the `Cancel` that
    /// tells the receiver is returned, remembered for a crossing `Verdict`.
    fn give_up(&mut self, id: u64, reason: String) -> Frame {
        let name = self.head.take().map(|head| head.name()).unwrap_or_default();
        self.fail(id, &name, reason.clone());
        self.remember_cancelled(id);
        Frame::Cancel {
            id,
            reason: truncate(reason),
        }
    }

    fn remember_cancelled(&mut self, id: u64) {
        if self.cancelled.len() == MAX_CANCELLED_REMEMBERED {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(id);
    }

    /// The receiver's final word on transfer `id`.
    pub fn verdict(
        &mut self,
        id: u64,
        status: VerdictStatus,
        detail: &str,
        peer: &str,
    ) -> Result<(), TransferViolation> {
        let Some(head) = self.head.take_if(|head| head.id() == Some(id)) else {
            if let Some(at) = self.cancelled.iter().position(|&c| c == id) {
                self.cancelled.remove(at);
                return Ok(());
            }
            return Err(TransferViolation::UnknownId {
                frame: "Verdict",
                id,
            });
        };
        let name = head.name();
        match (status, &head) {
            (VerdictStatus::Verified, Head::AwaitingVerdict(..))
            | (VerdictStatus::Verified, Head::Streaming { .. })
                if head.all_sent() =>
            {
                let _ = self.events.send(Event::TransferDelivered {
                    id,
                    name,
                    peer: peer.to_owned(),
                });
            }
            // The receiver has a file with the SHA-256 we offered, but that hash came
            // from the cache, which a write through a shared mapping can outdate
            // without moving the file's stamp: "already there" must not rest on it
            // alone. The file is read and hashed again and offered anew, and only a
            // hash just computed can be answered that way.
            (VerdictStatus::Verified, Head::Offered(_, Prepared::File(file)))
                if self.version >= 2 && file.hash_was_cached =>
            {
                self.note(id, &name, RECHECKING_CACHED_HASH.into());
                let queued = self.hash_first(id, file, true);
                self.head = Some(Head::Hashing(queued));
            }
            // No receiver can hold a file by a SHA-256 it was not told.
            (VerdictStatus::Verified, Head::Offered(_, file)) if file.is_unhashed() => {
                self.head = Some(head);
                return Err(TransferViolation::EarlyVerdict(id));
            }
            // Version 2: the receiver stored this very file before and its verdict
            // was lost with a connection; nothing more needs to be sent.
            (VerdictStatus::Verified, Head::Offered(..)) if self.version >= 2 => {
                let _ = self.events.send(Event::TransferAlreadyThere {
                    id,
                    name,
                    peer: peer.to_owned(),
                });
            }
            (VerdictStatus::Verified, _) => {
                self.head = Some(head);
                return Err(TransferViolation::EarlyVerdict(id));
            }
            // A file whose kept part did not match is sent again, once, from the
            // start. A folder keeps its verified files at the receiver; sending it
            // again (by hand) resumes at the first file that failed.
            (
                VerdictStatus::Corrupt,
                Head::AwaitingVerdict(_, file @ Prepared::File(_))
                | Head::Streaming {
                    file: file @ Prepared::File(_),
                    ..
                },
            ) if self.head_offset > 0 => {
                let file = file.clone();
                self.note(
                    id,
                    &name,
                    "the part kept by the receiver did not match; sending again from the start"
                        .into(),
                );
                self.head_offset = 0;
                self.head = Some(Head::Ready(id, file));
            }
            (VerdictStatus::Failed, _) if detail == CANCELLED_BY_RECEIVER => {
                let _ = self.events.send(Event::TransferCancelled {
                    id,
                    name,
                    receiving: false,
                    by: Some(peer.to_owned()),
                    kept: None,
                });
            }
            (status, _) => {
                let what = match status {
                    VerdictStatus::Rejected => "refused by the peer",
                    VerdictStatus::Corrupt => "arrived corrupt",
                    _ => "failed at the peer",
                };
                self.fail(id, &name, format!("{what}: {detail}"));
            }
        }
        Ok(())
    }

    /// The connection dropped: the file on the wire is offered again after the
    /// reconnect, and the receiver's kept `.part` lets it resume; queued files wait.
    pub fn connection_lost(&mut self, reason: &str) {
        self.off_the_wire(format!(
            "connection lost ({reason}); it resumes after reconnecting"
        ));
    }

    /// The session moved our direction to a newer connection while the old one
    /// still stood: what was on the wire is offered again there, at once.
    pub fn moved_to_a_newer_connection(&mut self) {
        self.off_the_wire("it goes on over a newer connection".into());
    }

    /// Takes what was on the wire off it, to be offered again on the next
    /// connection, and says so in `note`.
    fn off_the_wire(&mut self, note: String) {
        let on_the_wire = self.head.take_if(|head| {
            matches!(
                head,
                Head::Offered(..) | Head::Streaming { .. } | Head::AwaitingVerdict(..)
            )
        });
        self.pending_cancel = None;
        // The rest of a manifest belongs to the offer on the lost connection; the
        // offer is made whole again on the next one.
        self.offering.clear();
        let Some(head) = on_the_wire else {
            return;
        };
        let (id, name) = (head.id().unwrap_or_default(), head.name());
        if self.cancel_on_accept.take() == Some(id) {
            self.cancelled_here(id, &name);
            return;
        }
        let file = match head {
            Head::Offered(_, file)
            | Head::AwaitingVerdict(_, file)
            | Head::Streaming { file, .. } => file,
            Head::Hashing(_) | Head::Ready(..) => unreachable!("taken only when on the wire"),
        };
        self.note(id, &name, note);
        self.head = Some(Head::Ready(id, file));
    }

    /// The session ends because we or the peer left. A file on its way stops where
    /// it is: the receiver keeps what arrived, as it does whenever data stops
    /// coming, and says so; sending it again resumes there. The files still
    /// waiting were not sent.
    pub fn left(&mut self, we_left: bool, peer: &str) {
        let streaming = self
            .head
            .take_if(|head| matches!(head, Head::Streaming { .. }) && !head.all_sent());
        let who = if we_left { "you" } else { peer };
        if let Some(head) = streaming {
            let keeps = match we_left {
                true => format!("you left; {peer} keeps what arrived"),
                false => format!("{peer} left and keeps what arrived"),
            };
            let _ = self.events.send(Event::TransferInterrupted {
                id: head.id().unwrap_or_default(),
                name: head.name(),
                receiving: false,
                reason: format!("{keeps}, and sending it again resumes there"),
            });
        }
        self.abandon(&format!("not sent: {who} left"));
    }

    /// We are quitting: everything queued or in flight fails.
    pub fn abandon(&mut self, reason: &str) {
        if let Some(head) = self.head.take() {
            self.fail(
                head.id().unwrap_or_default(),
                &head.name(),
                reason.to_owned(),
            );
        }
        for queued in std::mem::take(&mut self.queue) {
            queued.hashing.abort();
            self.fail(queued.id, &queued.name, reason.to_owned());
        }
    }

    /// Hashes `file` on a blocking thread (`afresh`: even if the cache knows it),
    /// showing its progress, before it is offered.
    fn hash_first(&self, id: u64, file: &PreparedFile, afresh: bool) -> Queued {
        let (path, name) = (file.path.clone(), file.name.clone());
        let hash_cache = self.hash_cache.clone();
        let progress = ProgressReporter::new(self.events.clone(), id, Phase::Hashing, file.size);
        let hashing = tokio::spawn(async move {
            tokio::task::spawn_blocking(move || {
                hash_file(&path, hash_cache.as_ref(), progress, afresh)
            })
            .await
            .unwrap_or_else(|err| Err(SendError::Stopped(err.to_string())))
        });
        Queued { id, name, hashing }
    }

    /// Says what preparing a transfer found: a cached hash, files left out.
    fn note_preparation(&self, id: u64, prepared: &Prepared) {
        match prepared {
            Prepared::File(file) if file.hash_was_cached => {
                self.note(id, &file.name, HASH_WAS_CACHED.into());
            }
            Prepared::File(_) => {}
            Prepared::Folder(folder) => {
                for skipped in &folder.skipped {
                    self.note(id, &folder.name, format!("left out {skipped}"));
                }
                if folder.cached > 0 {
                    self.note(
                        id,
                        &folder.name,
                        format!(
                            "{} of {} files unchanged since they were last hashed; not hashed again",
                            folder.cached, folder.files
                        ),
                    );
                }
            }
        }
    }

    fn note(&self, id: u64, name: &str, note: String) {
        let _ = self.events.send(Event::TransferNote {
            id,
            name: name.to_owned(),
            receiving: false,
            note,
        });
    }

    /// The person here cancelled transfer `id`.
    fn cancelled_here(&self, id: u64, name: &str) {
        let _ = self.events.send(Event::TransferCancelled {
            id,
            name: name.to_owned(),
            receiving: false,
            by: None,
            kept: None,
        });
    }

    fn fail(&self, id: u64, name: &str, reason: String) {
        let _ = self.events.send(Event::TransferFailed {
            id,
            name: name.to_owned(),
            receiving: false,
            reason,
        });
    }
}

/// Reads and hashes the file at `path` to offer it with its SHA-256 (`afresh`: even
/// if `cache` knows it), showing how far it got through `progress`. Blocking.
fn hash_file(
    path: &Path,
    cache: Option<&SharedHashCache>,
    mut progress: ProgressReporter,
    afresh: bool,
) -> Result<Prepared, SendError> {
    let update = |done, _| progress.update(done);
    match afresh {
        true => PreparedFile::prepare_afresh(path, cache, update),
        false => PreparedFile::prepare(path, cache, update),
    }
    .map(Prepared::File)
}

impl Head {
    /// Whether every byte, and the SHA-256 that follows them if any, is on the wire
    /// (the reading thread may not have said so yet).
    fn all_sent(&self) -> bool {
        match self {
            Head::AwaitingVerdict(..) => true,
            Head::Streaming {
                file, sent, digest, ..
            } => *sent == file.size() && digest.is_none(),
            _ => false,
        }
    }

    fn id(&self) -> Option<u64> {
        match self {
            Head::Hashing(queued) => Some(queued.id),
            Head::Ready(id, _)
            | Head::Offered(id, _)
            | Head::AwaitingVerdict(id, _)
            | Head::Streaming { id, .. } => Some(*id),
        }
    }

    fn name(&self) -> String {
        match self {
            Head::Hashing(queued) => queued.name.clone(),
            Head::Ready(_, file)
            | Head::Offered(_, file)
            | Head::AwaitingVerdict(_, file)
            | Head::Streaming { file, .. } => file.name().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_folder_cut_off_inside_its_manifest_is_offered_whole_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        let (events, _events_rx) = mpsc::unbounded_channel();
        let mut sending = Sending::new(events, None);
        sending.connected(crate::frame::FOLDER_VERSION);
        sending.enqueue(root);
        assert!(matches!(
            sending.next_frame().await,
            Frame::Folder { id: 1, .. }
        ));
        sending.connection_lost("cut");
        sending.connected(crate::frame::FOLDER_VERSION);
        assert!(matches!(
            sending.next_frame().await,
            Frame::Folder { id: 1, .. }
        ));
        assert!(matches!(
            sending.next_frame().await,
            Frame::Manifest { id: 1, .. }
        ));
    }

    /// `data.bin` in `dir`, of `len` bytes.
    fn test_file(dir: &std::path::Path, len: u32) -> (PathBuf, Vec<u8>) {
        let path = dir.join("data.bin");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    /// A sender on a connection of `version`, with `data.bin` of `len` bytes queued.
    async fn queued(version: u16, len: u32) -> (tempfile::TempDir, PathBuf, Vec<u8>, Sending) {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = test_file(dir.path(), len);
        let (events, _) = mpsc::unbounded_channel();
        let mut sending = Sending::new(events, None);
        sending.connected(version);
        sending.enqueue(path.clone());
        (dir, path, data, sending)
    }

    /// The `Chunk`s after an `Accept`, and the frame that follows them.
    async fn data_then(sending: &mut Sending) -> (Vec<u8>, Frame) {
        let mut data = Vec::new();
        loop {
            match sending.next_frame().await {
                Frame::Chunk { data: chunk, .. } => data.extend(chunk),
                other => return (data, other),
            }
        }
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }

    #[tokio::test]
    async fn a_first_send_goes_before_its_hash_which_follows_the_data() {
        let (_dir, _, data, mut sending) =
            queued(crate::frame::UNHASHED_OFFER_VERSION, 300_000).await;
        assert_eq!(
            sending.next_frame().await,
            Frame::OfferUnhashed {
                id: 1,
                size: 300_000,
                name: "data.bin".into()
            }
        );
        sending.accepted(1, 0).unwrap();
        let (sent, after) = data_then(&mut sending).await;
        assert_eq!(sent, data);
        assert_eq!(
            after,
            Frame::Digest {
                id: 1,
                sha256: sha(&data)
            }
        );
        sending
            .verdict(1, VerdictStatus::Verified, "saved as data.bin", "bob")
            .unwrap();
        assert!(sending.is_idle());
    }

    #[tokio::test]
    async fn a_resumed_file_whose_hash_follows_hashes_the_bytes_the_receiver_kept_too() {
        let (_dir, _, data, mut sending) =
            queued(crate::frame::ONE_CONNECTION_UNHASHED_OFFER_VERSION, 300_000).await;
        assert!(matches!(
            sending.next_frame().await,
            Frame::OfferUnhashed { id: 1, .. }
        ));
        sending.accepted(1, 100_000).unwrap();
        let (sent, after) = data_then(&mut sending).await;
        assert_eq!(sent, data[100_000..]);
        assert_eq!(
            after,
            Frame::Digest {
                id: 1,
                sha256: sha(&data)
            }
        );
        // Lost before the verdict: offered again with the hash now known.
        sending.connection_lost("cut");
        sending.connected(crate::frame::ONE_CONNECTION_UNHASHED_OFFER_VERSION);
        assert!(matches!(
            sending.next_frame().await,
            Frame::Offer { id: 1, sha256, .. } if sha256 == sha(&data)
        ));
    }

    #[tokio::test]
    async fn a_file_cut_off_before_its_digest_is_offered_unhashed_again() {
        let (_dir, _, data, mut sending) =
            queued(crate::frame::UNHASHED_OFFER_VERSION, 300_000).await;
        sending.next_frame().await;
        sending.accepted(1, 0).unwrap();
        assert!(matches!(sending.next_frame().await, Frame::Chunk { .. }));
        sending.connection_lost("cut");
        sending.connected(crate::frame::UNHASHED_OFFER_VERSION);
        assert!(matches!(
            sending.next_frame().await,
            Frame::OfferUnhashed { id: 1, .. }
        ));
        // No receiver can say it holds a file by a hash it was not told.
        assert!(matches!(
            sending.verdict(1, VerdictStatus::Verified, "already saved as x", "bob"),
            Err(TransferViolation::EarlyVerdict(1))
        ));
        sending.accepted(1, 0).unwrap();
        let (sent, after) = data_then(&mut sending).await;
        assert_eq!(
            (sent, after),
            (
                data.clone(),
                Frame::Digest {
                    id: 1,
                    sha256: sha(&data)
                }
            )
        );
    }

    #[tokio::test]
    async fn a_file_that_changed_is_cancelled_and_a_verdict_crossing_that_is_ignored() {
        let (_dir, path, _, mut sending) = queued(crate::frame::UNHASHED_OFFER_VERSION, 1000).await;
        sending.next_frame().await;
        std::fs::write(&path, b"now shorter").unwrap();
        sending.accepted(1, 0).unwrap();
        assert!(matches!(
            sending.next_frame().await,
            Frame::Cancel { id: 1, reason } if reason.contains("changed while it was being sent")
        ));
        let crossing = sending.verdict(1, VerdictStatus::Failed, "disk full", "bob");
        assert!(crossing.is_ok(), "{crossing:?}");
    }

    #[tokio::test]
    async fn a_cancel_waits_for_an_accept_of_every_byte_while_the_digest_is_unsent() {
        let (_dir, _, _, mut sending) = queued(crate::frame::UNHASHED_OFFER_VERSION, 1000).await;
        sending.next_frame().await;
        sending.cancel(1);
        sending.accepted(1, 1000).unwrap();
        assert_eq!(
            sending.next_frame().await,
            Frame::Cancel {
                id: 1,
                reason: CANCELLED_BY_SENDER.into()
            }
        );
        assert!(sending.is_idle());
    }

    #[tokio::test]
    async fn an_older_receiver_gets_the_hash_in_the_offer() {
        let (_dir, _, data, mut sending) = queued(crate::frame::CREDIT_VERSION, 1000).await;
        assert!(matches!(
            sending.next_frame().await,
            Frame::Offer { id: 1, sha256, .. } if sha256 == sha(&data)
        ));
        sending.accepted(1, 0).unwrap();
        let mut sent = Vec::new();
        while sent.len() < data.len() {
            let Frame::Chunk { data: chunk, .. } = sending.next_frame().await else {
                panic!("data comes first");
            };
            sent.extend(chunk);
        }
        assert_eq!(sent, data);
        let after = tokio::time::timeout(Duration::from_millis(300), sending.next_frame()).await;
        assert!(
            after.is_err(),
            "no Digest after a hashed offer's data: {after:?}"
        );
    }

    #[tokio::test]
    async fn an_accept_past_the_end_fails_the_transfer_visibly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, b"four").unwrap();
        let (events, mut events_rx) = mpsc::unbounded_channel();
        let mut sending = Sending::new(events, None);
        sending.enqueue(path);
        let Frame::Offer { id, size, .. } = sending.next_frame().await else {
            panic!("an offer comes first");
        };
        assert!(matches!(
            sending.accepted(id, size + 1),
            Err(TransferViolation::BadOffset { .. })
        ));
        assert!(sending.is_idle(), "nothing is left to offer again silently");
        let failed =
            std::iter::from_fn(|| events_rx.try_recv().ok()).find_map(|event| match event {
                Event::TransferFailed { name, reason, .. } => Some((name, reason)),
                _ => None,
            });
        let (name, reason) = failed.expect("the user is told");
        assert_eq!(name, "f.txt");
        assert!(
            reason.contains("offset 5 for a file of 4 bytes"),
            "{reason}"
        );
    }
}
