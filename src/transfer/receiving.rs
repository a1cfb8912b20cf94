//! The receiver's side of transfers on one connection: checks each offer, feeds
//! chunks to the disk, and answers every offer with `Accept` or a `Verdict`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, watch};
use tokio::task::{self, JoinSet};

use super::backlog::Backlog;
use super::incoming::{
    self, CheckSlot, Incoming, MAX_ACTIVE_TRANSFERS, ManifestShare, Outcome, Overflow,
    ReceiveLimits,
};
use super::incoming_folder::{self, Ending, IncomingFolder};
use super::manifest;
use super::name;
use super::parts;
use super::progress::ProgressReporter;
use super::{CANCELLED_BY_RECEIVER, CANCELLED_BY_SENDER, TransferViolation, human_bytes, truncate};
use crate::frame::{Frame, VerdictStatus, takes_folders, takes_unhashed_offers};
use crate::identity::fingerprint::Fingerprint;
use crate::session::event::{Event, Phase, Verified};

/// A file or a folder whose data is arriving.
#[derive(Debug)]
enum Arriving {
    File(Incoming),
    Folder(IncomingFolder),
}

impl Arriving {
    fn name(&self) -> &str {
        match self {
            Arriving::File(file) => &file.meta.name,
            Arriving::Folder(folder) => folder.meta.name.trim_end_matches('/'),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Arriving::File(file) => file.meta.size,
            Arriving::Folder(folder) => folder.meta.size,
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            Arriving::File(file) => file.remaining(),
            Arriving::Folder(folder) => folder.remaining(),
        }
    }

    /// Every byte is here, and for a file whose SHA-256 follows its data, that too.
    fn is_complete(&self) -> bool {
        match self {
            Arriving::File(file) => file.is_complete(),
            Arriving::Folder(folder) => folder.remaining() == 0,
        }
    }

    /// Dropped part way: what may still come for it and is to be dropped too.
    fn rest(&self) -> Option<Discarded> {
        let awaits_digest = matches!(self, Arriving::File(file) if file.awaits_digest());
        (self.remaining() > 0 || awaits_digest).then(|| Discarded {
            remaining: self.remaining(),
            awaits_digest,
        })
    }

    async fn write(&mut self, data: Vec<u8>) -> Result<Option<Outcome>, Overflow> {
        match self {
            Arriving::File(file) => file.write(data).await,
            Arriving::Folder(folder) => folder.write(data).await,
        }
    }

    async fn finish(self, keep_partial: bool) -> Outcome {
        match self {
            Arriving::File(file) => file.finish(keep_partial).await,
            Arriving::Folder(folder) => folder.finish(keep_partial).await,
        }
    }
}

/// A transfer that failed part way, whose data may still be on its way.
#[derive(Debug)]
struct Discarded {
    remaining: u64,
    /// Its SHA-256 follows the data, in a `Digest` also to be dropped.
    awaits_digest: bool,
}

/// A folder whose manifest is still arriving.
struct PendingManifest {
    name: String,
    entries: u32,
    size: u64,
    expected: usize,
    bytes: Vec<u8>,
    check: CheckSlot,
    share: ManifestShare,
}

/// A folder whose whole manifest is in, being checked and laid out off the
/// connection's task, so that lines and other transfers keep flowing meanwhile.
/// Until its `Accept`, a `Chunk` or `Cancel` for it breaks the protocol.
struct Preparing {
    name: String,
    task: task::Id,
    _check: CheckSlot,
}

/// A folder ready to be accepted, or why it is refused.
type Prepared = (u64, Result<IncomingFolder, String>);

/// Transfers arriving on one connection.
pub struct Receiving {
    limits: ReceiveLimits,
    peer: String,
    /// The peer's pinned certificate: whose offers these are.
    sender: Fingerprint,
    active: HashMap<u64, Arriving>,
    /// Transfers that failed part way: what is still in flight for them is dropped.
    discarding: HashMap<u64, Discarded>,
    /// Folders whose manifests are arriving.
    manifests: HashMap<u64, PendingManifest>,
    /// Refused folders: the rest of their manifests is dropped.
    discarding_manifests: HashMap<u64, u64>,
    preparing: HashMap<u64, Preparing>,
    preparations: JoinSet<Prepared>,
    /// Set when the connection ends: preparations stop waiting for a slot.
    ended: watch::Sender<bool>,
    /// Set when this is dropped (its connection's task ended, or was aborted for a
    /// newer connection): manifests being checked stop at their next entry, and give
    /// back the memory they hold.
    stop_checks: Arc<AtomicBool>,
    /// Whether the sender may offer folders (protocol version 4 on).
    takes_folders: bool,
    /// Whether the sender may offer a file before hashing it (version 8 on).
    takes_unhashed_offers: bool,
    replies: mpsc::Sender<Frame>,
    events: mpsc::UnboundedSender<Event>,
    /// Whether the sender understands "already stored" (protocol version 2).
    answers_stored: bool,
    /// This connection's file data on its way to the disk, for `Credit`.
    backlog: Arc<Backlog>,
}

impl Receiving {
    /// `version` is the link's protocol version: from 2 on, an offer of a file the
    /// download folder already holds is answered with its verdict instead of a
    /// second copy.
    pub fn new(
        limits: ReceiveLimits,
        peer: String,
        sender: Fingerprint,
        version: u16,
        replies: mpsc::Sender<Frame>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Receiving {
            limits,
            peer,
            sender,
            active: HashMap::new(),
            discarding: HashMap::new(),
            manifests: HashMap::new(),
            discarding_manifests: HashMap::new(),
            preparing: HashMap::new(),
            preparations: JoinSet::new(),
            ended: watch::Sender::new(false),
            stop_checks: Arc::default(),
            takes_folders: takes_folders(version),
            takes_unhashed_offers: takes_unhashed_offers(version),
            replies,
            events,
            answers_stored: version >= 2,
            backlog: Arc::default(),
        }
    }

    /// This connection's file data on its way to the disk: what `Credit` grants from.
    pub fn backlog(&self) -> Arc<Backlog> {
        self.backlog.clone()
    }

    /// Handles an `Offer`, or with no `sha256` an `OfferUnhashed`: accept it, or
    /// refuse it with a `Verdict` and a message on both sides. The disk work runs off
    /// the async runtime, and reading from the connection waits for it.
    pub async fn offer(
        &mut self,
        id: u64,
        name: &str,
        size: u64,
        sha256: Option<[u8; 32]>,
    ) -> Result<(), TransferViolation> {
        if sha256.is_none() && !self.takes_unhashed_offers {
            return Err(TransferViolation::NotInVersion("OfferUnhashed"));
        }
        if self.in_use(id) {
            return Err(TransferViolation::ReusedId(id));
        }
        let meta = match incoming::validate(name, size, sha256, self.sender) {
            Ok(meta) => meta,
            Err(bad_name) => {
                self.refuse(id, name, bad_name.to_string()).await;
                return Ok(());
            }
        };
        // By name and size, as the session tells offers apart (one whose hash
        // follows may be this very file): waiting for it here would wait for
        // ourselves.
        let same = |file: &Incoming| file.meta.name == meta.name && file.meta.size == meta.size;
        if let Some((earlier, _)) = self
            .active
            .iter()
            .find(|(_, arriving)| matches!(arriving, Arriving::File(file) if same(file)))
        {
            let reason = format!("the same file is already arriving (transfer {earlier})");
            self.refuse(id, name, reason).await;
            return Ok(());
        }
        let Some(reservation) = self.limits.reserve(&meta).await else {
            self.refuse(
                id,
                name,
                format!("more than {MAX_ACTIVE_TRANSFERS} transfers at once"),
            )
            .await;
            return Ok(());
        };
        let mut progress = ProgressReporter::new(self.events.clone(), id, Phase::Receiving, size);
        let limits = self.limits.clone();
        let answers_stored = self.answers_stored;
        let (events, backlog) = (self.events.clone(), self.backlog());
        let started = tokio::task::spawn_blocking(move || -> Result<_, incoming::RefuseReason> {
            // Only a hash in the offer can name a file already here.
            if answers_stored
                && meta.sha256.is_some()
                && let Some(path) = limits.already_stored(&meta)
            {
                return Ok(Start::AlreadyStored(path));
            }
            let incoming = Incoming::start(&limits, meta, reservation, backlog, move |done| {
                progress.update(done)
            })?;
            expire_kept_parts(&limits.dir, &events);
            Ok(Start::Receiving(incoming))
        })
        .await;
        let incoming = match started {
            Ok(Ok(Start::Receiving(incoming))) => incoming,
            Ok(Ok(Start::AlreadyStored(path))) => {
                self.already_stored(id, name, &path).await;
                return Ok(());
            }
            Ok(Err(reason)) => {
                self.refuse(id, name, reason.to_string()).await;
                return Ok(());
            }
            Err(panicked) => {
                self.refuse(id, name, format!("the receiver failed: {panicked}"))
                    .await;
                return Ok(());
            }
        };
        let _ = self.events.send(Event::TransferIncoming {
            id,
            name: incoming.meta.name.clone(),
            size,
            from: self.peer.clone(),
            run_start: incoming.offset,
        });
        if incoming.offset > 0 {
            let _ = self.events.send(Event::TransferNote {
                id,
                name: incoming.meta.name.clone(),
                receiving: true,
                note: format!("resuming at {}", human_bytes(incoming.offset)),
            });
        }
        let _ = self
            .replies
            .send(Frame::Accept {
                id,
                offset: incoming.offset,
            })
            .await;
        let arriving = Arriving::File(incoming);
        if arriving.is_complete() {
            self.judge(id, arriving);
        } else {
            self.active.insert(id, arriving);
        }
        Ok(())
    }

    /// Whether `id` names a transfer of this connection that has not ended.
    fn in_use(&self, id: u64) -> bool {
        self.active.contains_key(&id)
            || self.discarding.contains_key(&id)
            || self.manifests.contains_key(&id)
            || self.discarding_manifests.contains_key(&id)
            || self.preparing.contains_key(&id)
    }

    /// Handles a `Folder`: what it announces is checked before any of its manifest
    /// is taken in; a refused folder's manifest is dropped as it arrives.
    pub async fn folder(
        &mut self,
        id: u64,
        entries: u32,
        manifest_len: u32,
        size: u64,
        offered: &str,
    ) -> Result<(), TransferViolation> {
        if !self.takes_folders {
            return Err(TransferViolation::NotInVersion("Folder"));
        }
        if self.in_use(id) {
            return Err(TransferViolation::ReusedId(id));
        }
        // A manifest follows its `Folder` at once, so at most one is arriving.
        if let Some(&earlier) = self
            .manifests
            .keys()
            .chain(self.discarding_manifests.keys())
            .next()
        {
            return Err(TransferViolation::FolderDuringManifest { id, earlier });
        }
        let checked = name::sanitize(offered)
            .map_err(|err| err.to_string())
            .and_then(|name| {
                manifest::check_announced(entries, manifest_len)
                    .map(|()| name)
                    .map_err(|err| err.to_string())
            })
            .and_then(|name| {
                (self.limits.admit_manifest(entries, manifest_len))
                    .map(|admitted| (name, admitted))
                    .map_err(|busy| busy.to_string())
            });
        let (name, (check, share)) = match checked {
            Ok(admitted) => admitted,
            Err(reason) => {
                if manifest_len > 0 {
                    self.discarding_manifests.insert(id, manifest_len.into());
                }
                self.refuse(id, offered, reason).await;
                return Ok(());
            }
        };
        self.manifests.insert(
            id,
            PendingManifest {
                name,
                entries,
                size,
                expected: manifest_len as usize,
                // Within MAX_MANIFEST_LEN, and counted in the session's share.
                bytes: Vec::with_capacity(manifest_len as usize),
                check,
                share,
            },
        );
        if manifest_len == 0 {
            self.manifest_done(id);
        }
        Ok(())
    }

    /// Handles a `Manifest` part: more bytes than announced break the protocol.
    pub async fn manifest(&mut self, id: u64, data: Vec<u8>) -> Result<(), TransferViolation> {
        let overflow = || TransferViolation::Overflow {
            id,
            detail: "more manifest bytes than the folder announced".into(),
        };
        if let Some(remaining) = self.discarding_manifests.get_mut(&id) {
            *remaining = remaining
                .checked_sub(data.len() as u64)
                .ok_or_else(overflow)?;
            if *remaining == 0 {
                self.discarding_manifests.remove(&id);
            }
            return Ok(());
        }
        let pending = self
            .manifests
            .get_mut(&id)
            .ok_or(TransferViolation::UnknownId {
                frame: "Manifest",
                id,
            })?;
        if data.len() > pending.expected - pending.bytes.len() {
            return Err(overflow());
        }
        pending.bytes.extend_from_slice(&data);
        if pending.bytes.len() == pending.expected {
            self.manifest_done(id);
        }
        Ok(())
    }

    /// The whole manifest is in: check and lay out the folder in the background;
    /// [`Receiving::prepared`] then accepts or refuses it.
    fn manifest_done(&mut self, id: u64) {
        let PendingManifest {
            name,
            entries,
            size,
            bytes,
            check,
            share,
            ..
        } = self.manifests.remove(&id).expect("a complete manifest");
        let manifest = Manifest {
            name: name.clone(),
            entries,
            size,
            bytes,
            share,
        };
        let (limits, events, backlog) = (self.limits.clone(), self.events.clone(), self.backlog());
        let ended = Ended {
            waiting: self.ended.subscribe(),
            checking: self.stop_checks.clone(),
        };
        let task = self
            .preparations
            .spawn(async move {
                (
                    id,
                    prepare_folder(limits, events, backlog, id, manifest, ended).await,
                )
            })
            .id();
        let preparing = Preparing {
            name,
            task,
            _check: check,
        };
        self.preparing.insert(id, preparing);
    }

    /// The next folder whose preparation ended; never ready while none is prepared.
    pub async fn next_prepared(&mut self) -> Prepared {
        loop {
            match self.preparations.join_next_with_id().await {
                None => std::future::pending().await,
                Some(Ok((_, prepared))) => return prepared,
                Some(Err(failed)) => {
                    let found = self.preparing.iter().find(|(_, p)| p.task == failed.id());
                    if let Some((&id, _)) = found {
                        return (id, Err(format!("the receiver failed: {failed}")));
                    }
                }
            }
        }
    }

    /// Accepts or refuses a folder whose preparation ended.
    pub async fn prepared(&mut self, (id, prepared): Prepared) {
        let Some(Preparing { name, .. }) = self.preparing.remove(&id) else {
            return;
        };
        match prepared {
            Ok(folder) => self.accept_folder(id, name, folder).await,
            Err(reason) => self.refuse(id, &name, reason).await,
        }
    }

    async fn accept_folder(&mut self, id: u64, name: String, folder: IncomingFolder) {
        let size = folder.meta.size;
        let _ = self.events.send(Event::TransferIncoming {
            id,
            name: name.clone(),
            size,
            from: self.peer.clone(),
            run_start: folder.offset,
        });
        if folder.offset > 0 {
            let _ = self.events.send(Event::TransferNote {
                id,
                name: name.clone(),
                receiving: true,
                note: format!(
                    "resuming at {}, after the files already verified",
                    human_bytes(folder.offset)
                ),
            });
        }
        let accept = Frame::Accept {
            id,
            offset: folder.offset,
        };
        let _ = self.replies.send(accept).await;
        let arriving = Arriving::Folder(folder);
        if arriving.is_complete() {
            self.judge(id, arriving);
        } else {
            self.active.insert(id, arriving);
        }
    }

    /// Handles a `Chunk`: more bytes than declared, or an unknown id, break the protocol.
    pub async fn chunk(&mut self, id: u64, data: Vec<u8>) -> Result<(), TransferViolation> {
        let len = data.len() as u64;
        let handled = self.take_chunk(id, data).await;
        // Queued or not, it has been taken in: what is not queued is drained.
        self.backlog.taken_in(len);
        handled
    }

    async fn take_chunk(&mut self, id: u64, data: Vec<u8>) -> Result<(), TransferViolation> {
        if let Some(dropped) = self.discarding.get_mut(&id) {
            dropped.remaining = dropped.remaining.checked_sub(data.len() as u64).ok_or(
                TransferViolation::Overflow {
                    id,
                    detail: "more bytes than the offer declared".into(),
                },
            )?;
            if dropped.remaining == 0 && !dropped.awaits_digest {
                self.discarding.remove(&id);
            }
            return Ok(());
        }
        let incoming = self
            .active
            .get_mut(&id)
            .ok_or(TransferViolation::UnknownId { frame: "Chunk", id })?;
        let early_failure =
            incoming
                .write(data)
                .await
                .map_err(|overflow| TransferViolation::Overflow {
                    id,
                    detail: overflow.to_string(),
                })?;
        if let Some(outcome) = early_failure {
            let incoming = self.active.remove(&id).expect("present above");
            if let Some(rest) = incoming.rest() {
                self.discarding.insert(id, rest);
            }
            self.report(id, incoming.name().to_owned(), outcome).await;
        } else if incoming.is_complete() {
            let incoming = self.active.remove(&id).expect("present above");
            self.judge(id, incoming);
        }
        Ok(())
    }

    /// Handles a `Digest`: the SHA-256 of an `OfferUnhashed` whose data is all here,
    /// which it is now checked against.
    pub fn digest(&mut self, id: u64, sha256: [u8; 32]) -> Result<(), TransferViolation> {
        if let Some(dropped) = self.discarding.get(&id)
            && dropped.awaits_digest
        {
            if dropped.remaining > 0 {
                let remaining = dropped.remaining;
                let misplaced = incoming::DigestOutOfPlace::BeforeTheData { remaining };
                return Err(TransferViolation::MisplacedDigest { id, misplaced });
            }
            self.discarding.remove(&id);
            return Ok(());
        }
        let Some(Arriving::File(file)) = self.active.get_mut(&id) else {
            return Err(TransferViolation::UnknownId {
                frame: "Digest",
                id,
            });
        };
        file.digest(sha256)
            .map_err(|misplaced| TransferViolation::MisplacedDigest { id, misplaced })?;
        let arriving = self.active.remove(&id).expect("present above");
        self.judge(id, arriving);
        Ok(())
    }

    /// Handles a `Cancel`: the sender gave up; discard what arrived.
    pub async fn cancel(&mut self, id: u64, reason: &str) -> Result<(), TransferViolation> {
        if self.discarding.remove(&id).is_some() {
            return Ok(());
        }
        let incoming = self
            .active
            .remove(&id)
            .ok_or(TransferViolation::UnknownId {
                frame: "Cancel",
                id,
            })?;
        let name = incoming.name().to_owned();
        incoming.finish(false).await;
        if reason == CANCELLED_BY_SENDER {
            let _ = self.events.send(Event::TransferCancelled {
                id,
                name,
                receiving: true,
                by: Some(self.peer.clone()),
                kept: None,
            });
        } else {
            self.fail(id, &name, format!("the sender stopped: {reason}"));
        }
        Ok(())
    }

    /// The person here cancelled transfer `id`: the sender is told with a `Verdict`
    /// of status Failed, which stops it, and what arrived is kept for a resume only
    /// if `keep`. Says why not when the file is not arriving (any more).
    pub async fn cancel_here(&mut self, id: u64, keep: bool) -> Result<(), String> {
        let Some(incoming) = self.active.remove(&id) else {
            return Err(format!(
                "no file is arriving as transfer {id} (a file that has fully arrived is being verified)"
            ));
        };
        if let Some(rest) = incoming.rest() {
            self.discarding.insert(id, rest);
        }
        let (name, size) = (incoming.name().to_owned(), incoming.size());
        let kept = match incoming.finish(keep).await {
            Outcome::Interrupted { part, received } => format!(
                "{} of {} kept in {} to resume",
                human_bytes(received),
                human_bytes(size),
                part.display()
            ),
            _ => "nothing kept".into(),
        };
        let _ = self.events.send(Event::TransferCancelled {
            id,
            name,
            receiving: true,
            by: None,
            kept: Some(kept),
        });
        let verdict = Frame::Verdict {
            id,
            status: VerdictStatus::Failed,
            detail: CANCELLED_BY_RECEIVER.into(),
        };
        let _ = self.replies.send(verdict).await;
        Ok(())
    }

    /// The connection ended: every unfinished file keeps its `.part` for a resume,
    /// unless `keep_partial` is false (the sender broke the protocol). Folders not
    /// yet accepted are dropped unannounced, with what they held before; the sender
    /// offers them again.
    pub async fn abandon(&mut self, reason: &str, keep_partial: bool) {
        self.manifests.clear();
        self.discarding_manifests.clear();
        // A folder not yet answered keeps what it held before, and is not placed.
        let unanswered = if keep_partial {
            Ending::Leave
        } else {
            Ending::Remove
        };
        self.preparing.clear();
        // Preparations stop waiting for a slot; the disk work they began is waited
        // for, so that what it made is left or removed as the sender deserves. A
        // newer connection that replaces this one drops it, which stops the checks.
        self.ended.send_replace(true);
        while let Some(prepared) = self.preparations.join_next().await {
            if let Ok((_, Ok(folder))) = prepared {
                folder.end(unanswered).await;
            }
        }
        for (id, incoming) in std::mem::take(&mut self.active) {
            let name = incoming.name().to_owned();
            let size = incoming.size();
            match incoming.finish(keep_partial).await {
                Outcome::Interrupted { part, received } => {
                    let held = match received == size {
                        true => format!("every byte but not its SHA-256 arrived, {reason}"),
                        false => format!(
                            "incomplete ({} of {}), {reason}",
                            human_bytes(received),
                            human_bytes(size)
                        ),
                    };
                    let _ = self.events.send(Event::TransferInterrupted {
                        id,
                        name,
                        receiving: true,
                        reason: format!("{held}; kept {} to resume", part.display()),
                    });
                }
                outcome => self.report_now(id, name, outcome),
            }
        }
    }

    /// All bytes are in: verify on the disk thread, then report on both sides.
    fn judge(&self, id: u64, incoming: Arriving) {
        let (replies, events, name, peer) = (
            self.replies.clone(),
            self.events.clone(),
            incoming.name().to_owned(),
            self.peer.clone(),
        );
        tokio::spawn(async move {
            let outcome = incoming.finish(true).await;
            let (event, verdict) = describe(id, name, outcome, &peer);
            let _ = events.send(event);
            let _ = replies.send(verdict).await;
        });
    }

    /// Reports an outcome on both sides; waits while the peer is not reading replies.
    async fn report(&self, id: u64, name: String, outcome: Outcome) {
        let (event, verdict) = describe(id, name, outcome, &self.peer);
        let _ = self.events.send(event);
        let _ = self.replies.send(verdict).await;
    }

    /// Reports an outcome while the connection is ending: the verdict goes out only
    /// if there is room for it, because nobody may be writing any more.
    fn report_now(&self, id: u64, name: String, outcome: Outcome) {
        let (event, verdict) = describe(id, name, outcome, &self.peer);
        let _ = self.events.send(event);
        let _ = self.replies.try_send(verdict);
    }

    async fn refuse(&self, id: u64, name: &str, reason: String) {
        self.fail(id, name, format!("refused: {reason}"));
        let refusal = Frame::Verdict {
            id,
            status: VerdictStatus::Rejected,
            detail: truncate(reason),
        };
        let _ = self.replies.send(refusal).await;
    }

    /// The offer is a file the download folder holds already, typically offered
    /// again because its verdict was lost: say so on both sides, store nothing.
    async fn already_stored(&self, id: u64, offered: &str, path: &std::path::Path) {
        let (event, verdict) = already_received(id, offered, path, &self.peer);
        let _ = self.events.send(event);
        let _ = self.replies.send(verdict).await;
    }

    fn fail(&self, id: u64, name: &str, reason: String) {
        let _ = self.events.send(Event::TransferFailed {
            id,
            name: name.to_owned(),
            receiving: true,
            reason,
        });
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        // A connection's task that is aborted never calls `abandon`.
        self.stop_checks.store(true, Ordering::Relaxed);
    }
}

/// A folder's whole manifest, with the share of memory it holds.
struct Manifest {
    name: String,
    entries: u32,
    size: u64,
    bytes: Vec<u8>,
    share: ManifestShare,
}

/// How a preparation learns that its connection ended.
struct Ended {
    waiting: watch::Receiver<bool>,
    checking: Arc<AtomicBool>,
}

/// Checks a whole manifest, reserves a slot for the folder and lays it out on disk,
/// resuming what an earlier transfer of it kept. Nothing is written for a manifest
/// that fails a check. The error is the refusal's reason.
async fn prepare_folder(
    limits: ReceiveLimits,
    events: mpsc::UnboundedSender<Event>,
    backlog: Arc<Backlog>,
    id: u64,
    manifest: Manifest,
    ended: Ended,
) -> Result<IncomingFolder, String> {
    let failed = |panicked: task::JoinError| format!("the receiver failed: {panicked}");
    let Manifest {
        name,
        entries,
        size,
        bytes,
        share,
    } = manifest;
    let Ended {
        mut waiting,
        checking,
    } = ended;
    // The bytes and their share go to the check, so that a check that outlives this
    // task still counts until it stops; the bytes are dropped there.
    let dir = limits.dir.clone();
    let (checked, meta, share) = task::spawn_blocking(move || {
        let stop = || checking.load(Ordering::Relaxed);
        let rules = parts::name_rules(&dir);
        let checked = manifest::check_until(&bytes, entries, size, rules, stop)?;
        let meta = incoming_folder::folder_meta(&name, size, &bytes);
        Ok((Arc::new(checked), meta, share))
    })
    .await
    .map_err(failed)?
    .map_err(|err: manifest::ManifestError| format!("the folder's manifest is refused: {err}"))?;
    // Only a wait for a slot is cut short: a preparation that can go on does.
    let reservation = tokio::select! {
        biased;
        reservation = limits.reserve(&meta) => reservation
            .ok_or_else(|| format!("more than {MAX_ACTIVE_TRANSFERS} transfers at once"))?,
        _ = waiting.wait_for(|ended| *ended) => return Err("the connection ended".into()),
    };
    let reservation = reservation.holding(share);
    let mut progress = ProgressReporter::new(events.clone(), id, Phase::Receiving, size)
        .with_files(checked.file_list());
    task::spawn_blocking(move || {
        let folder =
            IncomingFolder::start(&limits, meta, checked, reservation, backlog, move |done| {
                progress.update(done)
            })?;
        expire_kept_parts(&limits.dir, &events);
        Ok(folder)
    })
    .await
    .map_err(failed)?
    .map_err(|reason: incoming::RefuseReason| reason.to_string())
}

/// Removes the kept parts in `dir` that expired, and says so. Run once a transfer
/// holds its own part, so that the part it resumes is never among them.
fn expire_kept_parts(dir: &std::path::Path, events: &mpsc::UnboundedSender<Event>) {
    let expired = parts::expire(dir, std::time::SystemTime::now());
    if !expired.is_empty() {
        let _ = events.send(Event::KeptPartsRemoved {
            folder: dir.join(parts::PARTS_DIR),
            old: expired.old,
            surplus: expired.surplus,
            max_age: parts::MAX_KEPT_AGE,
            max_parts: parts::MAX_KEPT_PARTS,
        });
    }
}

/// What an offer turned into.
enum Start {
    Receiving(Incoming),
    AlreadyStored(std::path::PathBuf),
}

/// The local event and the verdict frame for an outcome.
fn describe(id: u64, name: String, outcome: Outcome, from: &str) -> (Event, Frame) {
    match outcome {
        Outcome::AlreadyStored { path } => already_received(id, &name, &path, from),
        Outcome::Saved { path, sha256 } => (
            Event::TransferSaved {
                id,
                path: path.clone(),
                verified: Verified::Sha256(hex::encode(sha256)),
            },
            Frame::Verdict {
                id,
                status: VerdictStatus::Verified,
                detail: format!(
                    "saved as {}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
            },
        ),
        Outcome::Corrupt { expected, actual } => {
            let reason = format!(
                "SHA-256 mismatch: expected {}, received {}; nothing was kept",
                hex::encode(expected),
                hex::encode(actual)
            );
            (
                Event::TransferFailed {
                    id,
                    name,
                    receiving: true,
                    reason: reason.clone(),
                },
                Frame::Verdict {
                    id,
                    status: VerdictStatus::Corrupt,
                    detail: reason,
                },
            )
        }
        Outcome::FolderSaved { path, files, bytes } => (
            Event::TransferSaved {
                id,
                path: path.clone(),
                verified: Verified::Files { files, bytes },
            },
            Frame::Verdict {
                id,
                status: VerdictStatus::Verified,
                detail: truncate(format!(
                    "saved as {}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                )),
            },
        ),
        Outcome::FilesFailed { failed, files } => {
            let reason = incoming_folder::describe_failures(&failed, files);
            (
                Event::TransferFailed {
                    id,
                    name,
                    receiving: true,
                    reason: format!("{reason}; the verified files are kept for a resume"),
                },
                Frame::Verdict {
                    id,
                    status: VerdictStatus::Corrupt,
                    detail: truncate(reason),
                },
            )
        }
        Outcome::Interrupted { received, .. } => (
            Event::TransferFailed {
                id,
                name,
                receiving: true,
                reason: format!("stopped after {}", human_bytes(received)),
            },
            Frame::Verdict {
                id,
                status: VerdictStatus::Failed,
                detail: format!("stopped after {}", human_bytes(received)),
            },
        ),
        Outcome::Failed(reason) => (
            Event::TransferFailed {
                id,
                name,
                receiving: true,
                reason: format!("{reason}; nothing was kept"),
            },
            Frame::Verdict {
                id,
                status: VerdictStatus::Failed,
                detail: truncate(reason),
            },
        ),
    }
}

/// What is said, here and to the sender, of offer `id` of `offered`, stored
/// earlier as `path`.
fn already_received(id: u64, offered: &str, path: &std::path::Path, from: &str) -> (Event, Frame) {
    let stored_as = path.file_name().unwrap_or_default().to_string_lossy();
    let verdict = Frame::Verdict {
        id,
        status: VerdictStatus::Verified,
        detail: truncate(format!("already saved as {stored_as}")),
    };
    let event = Event::TransferAlreadyReceived {
        id,
        name: offered.to_owned(),
        path: path.to_owned(),
        from: from.to_owned(),
    };
    (event, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CREDIT_VERSION, FOLDER_VERSION, PROTOCOL_VERSION, UNHASHED_OFFER_VERSION};
    use crate::transfer::names_in;
    use crate::transfer::stored::StoredRecord;
    use sha2::{Digest, Sha256};
    use std::path::Path;
    use std::time::Duration;

    /// One connection's receiving side, and the frames it answers with.
    fn connection(limits: &ReceiveLimits) -> (Receiving, mpsc::Receiver<Frame>) {
        connection_at(limits, PROTOCOL_VERSION)
    }

    fn connection_at(limits: &ReceiveLimits, version: u16) -> (Receiving, mpsc::Receiver<Frame>) {
        let (files, replies, _) = connection_told(limits, version);
        (files, replies)
    }

    /// A connection as [`connection_at`] makes it, and what it tells the user.
    fn connection_told(
        limits: &ReceiveLimits,
        version: u16,
    ) -> (
        Receiving,
        mpsc::Receiver<Frame>,
        mpsc::UnboundedReceiver<Event>,
    ) {
        let (replies, replies_rx) = mpsc::channel(64);
        let (events, events_rx) = mpsc::unbounded_channel();
        let alice = Fingerprint::of(b"alice");
        let files = Receiving::new(
            limits.clone(),
            "alice".into(),
            alice,
            version,
            replies,
            events,
        );
        (files, replies_rx, events_rx)
    }

    async fn answer(replies: &mut mpsc::Receiver<Frame>) -> Frame {
        tokio::time::timeout(Duration::from_secs(10), replies.recv())
            .await
            .expect("an answer in time")
            .expect("the connection answers")
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// Announces folder `id`, named `tree`, holding `a.txt` with `data`, and sends
    /// its whole manifest.
    async fn offer_folder(files: &mut Receiving, id: u64, data: &[u8]) {
        let size = data.len() as u64;
        announce(files, id, "tree", (size, sha(data)), true)
            .await
            .unwrap();
    }

    /// Announces folder `id` named `name` holding one file `a.txt` of `(size,
    /// sha256)`, and sends its manifest if `whole`.
    async fn announce(
        files: &mut Receiving,
        id: u64,
        name: &str,
        (size, sha256): (u64, [u8; 32]),
        whole: bool,
    ) -> Result<(), TransferViolation> {
        let entries = [manifest::Entry {
            path: "a.txt".into(),
            kind: manifest::Kind::File { size, sha256 },
        }];
        let bytes = manifest::encode(&entries);
        files.folder(id, 1, bytes.len() as u32, size, name).await?;
        if whole {
            files.manifest(id, bytes).await?;
        }
        Ok(())
    }

    fn rejection(frame: Frame) -> (u64, String) {
        match frame {
            Frame::Verdict {
                id,
                status: VerdictStatus::Rejected,
                detail,
            } => (id, detail),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_folder_before_the_last_manifest_is_whole_breaks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, _replies) = connection_at(&limits, FOLDER_VERSION);
        announce(&mut files, 1, "tree", (4, sha(b"data")), false)
            .await
            .unwrap();
        assert!(matches!(
            announce(&mut files, 2, "other", (4, sha(b"data")), true).await,
            Err(TransferViolation::FolderDuringManifest { id: 2, earlier: 1 })
        ));
        // The same holds while a refused folder's manifest is being dropped.
        let (mut files, mut replies) = connection_at(&limits, FOLDER_VERSION);
        announce(&mut files, 1, "..", (4, sha(b"data")), false)
            .await
            .unwrap();
        assert_eq!(rejection(answer(&mut replies).await).0, 1);
        assert!(matches!(
            announce(&mut files, 2, "other", (4, sha(b"data")), true).await,
            Err(TransferViolation::FolderDuringManifest { id: 2, earlier: 1 })
        ));
        files.abandon("the sender broke the protocol", false).await;
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn at_most_four_folders_are_checked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies) = connection_at(&limits, FOLDER_VERSION);
        for id in 1..=MAX_ACTIVE_TRANSFERS as u64 {
            announce(
                &mut files,
                id,
                &format!("tree{id}"),
                (4, sha(b"data")),
                true,
            )
            .await
            .unwrap();
        }
        announce(&mut files, 9, "one too many", (4, sha(b"data")), true)
            .await
            .unwrap();
        let (id, detail) = rejection(answer(&mut replies).await);
        assert_eq!(id, 9);
        assert!(detail.contains("folders being checked at once"), "{detail}");
        files.abandon("the connection was lost", true).await;
    }

    #[tokio::test]
    async fn folders_checked_at_once_are_counted_across_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let data = (4, sha(b"data"));
        let (mut first, _first_replies) = connection_at(&limits, FOLDER_VERSION);
        for id in 1..=2 {
            announce(&mut first, id, &format!("tree{id}"), data, true)
                .await
                .unwrap();
        }
        let (mut second, mut replies) = connection_at(&limits, FOLDER_VERSION);
        for id in 3..=4 {
            announce(&mut second, id, &format!("tree{id}"), data, true)
                .await
                .unwrap();
        }
        announce(&mut second, 9, "one too many", data, true)
            .await
            .unwrap();
        let (id, detail) = rejection(answer(&mut replies).await);
        assert_eq!(id, 9);
        assert!(detail.contains("folders being checked at once"), "{detail}");
        // A connection that ends, even without a word, gives its places back.
        drop(first);
        announce(&mut second, 10, "in turn", data, true)
            .await
            .unwrap();
        let mut prepared = Vec::new();
        for _ in 0..3 {
            let (id, folder) = next_prepared(&mut second).await;
            prepared.push((id, folder.is_ok()));
        }
        prepared.sort();
        assert_eq!(prepared, [(3, true), (4, true), (10, true)]);
        second.abandon("the connection was lost", true).await;
    }

    #[tokio::test]
    async fn manifests_share_one_budget_of_memory_across_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        // The largest manifest a folder may have, announced and never sent, takes
        // the whole budget.
        let (mut first, _first_replies) = connection_at(&limits, FOLDER_VERSION);
        let (entries, len) = (manifest::MAX_ENTRIES, manifest::MAX_MANIFEST_LEN);
        first.folder(1, entries, len, 0, "largest").await.unwrap();
        let (mut second, mut replies) = connection_at(&limits, FOLDER_VERSION);
        announce(&mut second, 2, "small", (4, sha(b"data")), true)
            .await
            .unwrap();
        let (id, detail) = rejection(answer(&mut replies).await);
        assert_eq!(id, 2);
        assert!(detail.contains("hold their manifests"), "{detail}");
        drop(first);
        announce(&mut second, 3, "small", (4, sha(b"data")), true)
            .await
            .unwrap();
        let (id, folder) = next_prepared(&mut second).await;
        assert_eq!((id, folder.is_ok()), (3, true));
        second.abandon("the connection was lost", true).await;
    }

    #[tokio::test]
    async fn a_folder_refused_for_room_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies) = connection_at(&limits, FOLDER_VERSION);
        announce(&mut files, 1, "huge", (1 << 62, sha(b"huge")), true)
            .await
            .unwrap();
        let prepared = next_prepared(&mut files).await;
        files.prepared(prepared).await;
        let (id, detail) = rejection(answer(&mut replies).await);
        assert_eq!(id, 1);
        assert!(detail.contains("free in the download folder"), "{detail}");
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_unanswered_folder_is_not_placed_when_the_connection_ends() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        // Every byte is held at once (an empty file), so nothing but the answer is
        // missing; the connection is lost before it goes out.
        let (mut lost, _) = connection_at(&limits, FOLDER_VERSION);
        offer_folder(&mut lost, 1, b"").await;
        lost.abandon("the connection was lost", true).await;
        assert_eq!(names_in(dir.path()), [crate::transfer::parts::PARTS_DIR]);
        // Offered again, it is placed once answered.
        let (mut again, mut replies) = connection_at(&limits, FOLDER_VERSION);
        offer_folder(&mut again, 1, b"").await;
        let prepared = next_prepared(&mut again).await;
        again.prepared(prepared).await;
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 1, offset: 0 }
        );
        assert!(matches!(
            answer(&mut replies).await,
            Frame::Verdict {
                status: VerdictStatus::Verified,
                ..
            }
        ));
        assert_eq!(names_in(dir.path()), ["tree"]);
        // After a protocol error, what it made is removed instead.
        let (mut broken, _) = connection_at(&limits, FOLDER_VERSION);
        offer_folder(&mut broken, 1, b"other").await;
        broken.abandon("the sender broke the protocol", false).await;
        assert_eq!(names_in(dir.path()), ["tree"]);
    }

    async fn next_prepared(files: &mut Receiving) -> Prepared {
        tokio::time::timeout(Duration::from_secs(10), files.next_prepared())
            .await
            .expect("the folder is prepared in time")
    }

    #[tokio::test]
    async fn other_offers_are_answered_while_a_folder_is_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies) = connection_at(&limits, FOLDER_VERSION);
        offer_folder(&mut files, 1, b"folder data").await;
        files
            .offer(2, "b.bin", 10, Some(sha(b"0123456789")))
            .await
            .unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 2, offset: 0 }
        );
        let prepared = next_prepared(&mut files).await;
        files.prepared(prepared).await;
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 1, offset: 0 }
        );
        files.chunk(1, b"folder data".to_vec()).await.unwrap();
        assert!(matches!(
            answer(&mut replies).await,
            Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                ..
            }
        ));
        assert_eq!(
            std::fs::read(dir.path().join("tree/a.txt")).unwrap(),
            b"folder data"
        );
    }

    #[tokio::test]
    async fn data_or_cancel_before_a_folder_is_accepted_breaks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, _replies) = connection_at(&limits, FOLDER_VERSION);
        offer_folder(&mut files, 1, b"folder data").await;
        assert!(matches!(
            files.chunk(1, b"folder data".to_vec()).await,
            Err(TransferViolation::UnknownId { id: 1, .. })
        ));
        assert!(matches!(
            files.cancel(1, "cancelled").await,
            Err(TransferViolation::UnknownId { id: 1, .. })
        ));
        files.abandon("the sender broke the protocol", false).await;
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    /// Limits for `dir` with a record of stored files kept in `home`.
    fn remembering(dir: &Path, home: &Path) -> ReceiveLimits {
        let record = StoredRecord::open(home.join("bob.stored"));
        ReceiveLimits::new(dir.to_owned(), None).remembering(record)
    }

    #[tokio::test]
    async fn an_offer_repeated_on_a_new_connection_is_answered_already_saved() {
        // The first connection delivered every byte, then was replaced before its
        // verdict went out; the sender offers the file again on the next one.
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let limits = remembering(dir.path(), home.path());
        let data = vec![7u8; 300_000];
        let (mut old, _old_replies) = connection(&limits);
        old.offer(1, "b.bin", 300_000, Some(sha(&data)))
            .await
            .unwrap();
        for chunk in data.chunks(65_536) {
            old.chunk(1, chunk.to_vec()).await.unwrap();
        }
        let (mut new, mut replies) = connection(&limits);
        new.offer(1, "b.bin", 300_000, Some(sha(&data)))
            .await
            .unwrap();
        let Frame::Verdict { status, detail, .. } = answer(&mut replies).await else {
            panic!("the repeated offer is answered with a verdict");
        };
        assert_eq!(
            (status, detail.as_str()),
            (VerdictStatus::Verified, "already saved as b.bin")
        );
        assert_eq!(names_in(dir.path()), ["b.bin"]);
        assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), data);
    }

    #[tokio::test]
    async fn a_file_stored_before_a_restart_is_not_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let data = b"stored by the last run";
        let sha256 = sha(data);
        {
            let last_run = remembering(dir.path(), home.path());
            let (mut files, mut replies) = connection(&last_run);
            files.offer(1, "b.bin", 22, Some(sha256)).await.unwrap();
            answer(&mut replies).await;
            files.chunk(1, data.to_vec()).await.unwrap();
            assert!(matches!(
                answer(&mut replies).await,
                Frame::Verdict {
                    status: VerdictStatus::Verified,
                    ..
                }
            ));
        }
        let restarted = remembering(dir.path(), home.path());
        let (mut files, mut replies) = connection(&restarted);
        files.offer(4, "b.bin", 22, Some(sha256)).await.unwrap();
        assert!(matches!(
            answer(&mut replies).await,
            Frame::Verdict {
                id: 4,
                status: VerdictStatus::Verified,
                ..
            }
        ));
        files
            .offer(5, "b.bin", 22, Some(sha(b"different bytes, same size!")))
            .await
            .unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 5, offset: 0 }
        );
    }

    #[tokio::test]
    async fn a_file_the_receiver_did_not_store_is_stored_again_as_a_copy() {
        // A file put in the download folder by hand, with the offered name and
        // bytes: answering "already saved" would tell the peer what is there.
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.bin"), b"put here by hand").unwrap();
        let limits = remembering(dir.path(), home.path());
        let (mut files, mut replies) = connection(&limits);
        files
            .offer(1, "b.bin", 16, Some(sha(b"put here by hand")))
            .await
            .unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 1, offset: 0 }
        );
        files.chunk(1, b"put here by hand".to_vec()).await.unwrap();
        let Frame::Verdict { status, detail, .. } = answer(&mut replies).await else {
            panic!("the file is judged");
        };
        assert_eq!(
            (status, detail.as_str()),
            (VerdictStatus::Verified, "saved as b (1).bin")
        );
    }

    #[tokio::test]
    async fn a_file_offered_before_its_hash_is_judged_once_its_digest_comes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut older, _) = connection_at(&limits, CREDIT_VERSION);
        assert!(matches!(
            older.offer(1, "late.txt", 4, None).await,
            Err(TransferViolation::NotInVersion("OfferUnhashed"))
        ));

        let (mut files, mut replies) = connection_at(&limits, UNHASHED_OFFER_VERSION);
        files.offer(1, "late.txt", 4, None).await.unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 1, offset: 0 }
        );
        files.chunk(1, b"data".to_vec()).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), replies.recv())
                .await
                .is_err(),
            "judged before its SHA-256 came"
        );
        assert!(matches!(
            files.digest(2, sha(b"data")),
            Err(TransferViolation::UnknownId {
                frame: "Digest",
                id: 2
            })
        ));
        files.digest(1, sha(b"data")).unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                detail: "saved as late.txt".into(),
            }
        );
        assert_eq!(std::fs::read(dir.path().join("late.txt")).unwrap(), b"data");
        assert!(matches!(
            files.digest(1, sha(b"data")),
            Err(TransferViolation::UnknownId {
                frame: "Digest",
                id: 1
            })
        ));

        files.offer(2, "early.txt", 4, None).await.unwrap();
        answer(&mut replies).await;
        files.chunk(2, b"da".to_vec()).await.unwrap();
        assert!(matches!(
            files.digest(2, sha(b"data")),
            Err(TransferViolation::MisplacedDigest { id: 2, .. })
        ));
    }

    #[tokio::test]
    async fn a_file_whose_digest_never_came_is_kept_and_said_to_lack_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies_rx, mut events_rx) =
            connection_told(&limits, UNHASHED_OFFER_VERSION);
        files.offer(1, "late.txt", 4, None).await.unwrap();
        answer(&mut replies_rx).await;
        files.chunk(1, b"data".to_vec()).await.unwrap();
        files.abandon("the connection was lost", true).await;
        let said = std::iter::from_fn(|| events_rx.try_recv().ok()).find_map(|event| match event {
            Event::TransferInterrupted { reason, .. } => Some(reason),
            _ => None,
        });
        let said = said.expect("the user is told");
        assert!(
            said.starts_with(
                "every byte but not its SHA-256 arrived, the connection was lost; kept "
            ),
            "{said}"
        );
    }

    #[tokio::test]
    async fn the_digest_of_a_file_cancelled_here_is_dropped_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies) = connection_at(&limits, UNHASHED_OFFER_VERSION);
        files.offer(1, "late.txt", 4, None).await.unwrap();
        answer(&mut replies).await;
        files.chunk(1, b"da".to_vec()).await.unwrap();
        files.cancel_here(1, false).await.unwrap();
        assert!(matches!(
            answer(&mut replies).await,
            Frame::Verdict {
                status: VerdictStatus::Failed,
                ..
            }
        ));
        // What the sender wrote before it read the verdict; not its digest yet.
        assert!(matches!(
            files.digest(1, sha(b"data")),
            Err(TransferViolation::MisplacedDigest { id: 1, .. })
        ));
        files.chunk(1, b"ta".to_vec()).await.unwrap();
        files.digest(1, sha(b"data")).unwrap();
        assert!(matches!(
            files.chunk(1, b"x".to_vec()).await,
            Err(TransferViolation::UnknownId {
                frame: "Chunk",
                id: 1
            })
        ));
        assert_eq!(names_in(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn the_same_file_twice_at_once_on_one_connection_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ReceiveLimits::new(dir.path().to_owned(), None);
        let (mut files, mut replies) = connection(&limits);
        files
            .offer(1, "b.bin", 10, Some(sha(b"0123456789")))
            .await
            .unwrap();
        assert_eq!(
            answer(&mut replies).await,
            Frame::Accept { id: 1, offset: 0 }
        );
        files
            .offer(2, "b.bin", 10, Some(sha(b"0123456789")))
            .await
            .unwrap();
        let Frame::Verdict {
            id: 2,
            status: VerdictStatus::Rejected,
            detail,
        } = answer(&mut replies).await
        else {
            panic!("the second offer is refused");
        };
        assert!(detail.contains("already arriving (transfer 1)"), "{detail}");
        files.chunk(1, b"0123456789".to_vec()).await.unwrap();
        assert!(matches!(
            answer(&mut replies).await,
            Frame::Verdict {
                id: 1,
                status: VerdictStatus::Verified,
                ..
            }
        ));
    }
}
