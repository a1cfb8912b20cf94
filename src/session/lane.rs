//! What one half of a session reads from and writes to: a connection of its own
//! (two-connection mode), or its share of one connection that carries both
//! directions ([`super::one_connection`]). The halves cannot tell the two apart.

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::frame::Frame;
use crate::identity::fingerprint::Fingerprint;
use crate::link::connection::{ConnectionError, FrameReader, FrameWriter};
use crate::link::handshake::{Link, Tls};

/// One direction's view of a connection, with what the handshake learned.
#[derive(Debug)]
pub struct Lane {
    pub reader: LaneReader,
    pub writer: LaneWriter,
    /// The common name in the peer's pinned certificate (untrusted text).
    pub peer_name: String,
    /// That certificate's fingerprint.
    pub peer_fingerprint: Fingerprint,
    /// The peer's per-run session id from its `Hello`.
    pub peer_session: u64,
    pub version: u16,
    /// We dialed its connection: after a loss, we are the side that dials again.
    pub dialed: bool,
    /// Told when the lane is lost, so that its connection is made again; dropped
    /// untold when the lane ended for good.
    pub on_loss: Option<oneshot::Sender<()>>,
    /// Tells the half that the session moved its direction to a newer connection.
    pub retire: Option<oneshot::Receiver<()>>,
}

/// Where a lane's frames come from.
#[derive(Debug)]
pub enum LaneReader {
    Own(FrameReader<ReadHalf<Tls>>),
    Shared(mpsc::Receiver<Routed>),
}

/// Where a lane's frames go.
#[derive(Debug)]
pub enum LaneWriter {
    Own(FrameWriter<WriteHalf<Tls>>),
    Shared(mpsc::Sender<Outgoing>),
}

/// What the reader of a shared connection hands a lane.
#[derive(Debug)]
pub enum Routed {
    Frame(Frame),
    /// The peer ended this direction (`Finish`, or `FinishAck` for ours).
    End,
    Failed(ConnectionError),
}

/// What a lane hands the writer of a shared connection.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Frame),
    /// This lane is done; answered once its end is on the wire.
    End(oneshot::Sender<()>),
}

impl Lane {
    /// A connection of its own for one direction.
    pub fn whole(link: Link, on_loss: Option<oneshot::Sender<()>>) -> Lane {
        let dialed = link.dialed();
        let (reader, writer) = link.connection.into_split();
        Lane {
            reader: LaneReader::Own(reader),
            writer: LaneWriter::Own(writer),
            peer_name: link.peer_name,
            peer_fingerprint: link.peer_fingerprint,
            peer_session: link.peer_session,
            version: link.version,
            dialed,
            on_loss,
            retire: None,
        }
    }

    /// This lane, and what retires it: once told, the half leaves it for the next
    /// lane it is handed, as if it were lost but without saying so.
    pub fn retirable(mut self) -> (Lane, oneshot::Sender<()>) {
        let (retire, retired) = oneshot::channel();
        self.retire = Some(retired);
        (self, retire)
    }

    /// Whether the session has retired this lane (its successor may be waiting).
    pub fn is_retired(&mut self) -> bool {
        self.retire
            .as_mut()
            .is_some_and(|retired| retired.try_recv().is_ok())
    }

    /// Resolves once the session has retired this lane; never when it cannot.
    pub async fn retired(retire: &mut Option<oneshot::Receiver<()>>) {
        if let Some(retired) = retire
            && retired.await.is_ok()
        {
            return;
        }
        *retire = None;
        std::future::pending().await
    }

    /// Whether this lane is one direction of a connection that carries both.
    pub fn is_shared(&self) -> bool {
        matches!(self.writer, LaneWriter::Shared(_))
    }

    /// Gives the connection up as lost: it is dropped, and made again.
    pub fn lost(&mut self) {
        if let Some(on_loss) = self.on_loss.take() {
            let _ = on_loss.send(());
        }
    }
}

impl LaneReader {
    /// The next frame; `None` once the peer ended this direction. Cancel-safe.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        match self {
            LaneReader::Own(reader) => reader.read_frame().await,
            LaneReader::Shared(routed) => match routed.recv().await {
                Some(Routed::Frame(frame)) => Ok(Some(frame)),
                Some(Routed::End) => Ok(None),
                Some(Routed::Failed(err)) => Err(err),
                None => Err(ConnectionError::Dropped),
            },
        }
    }
}

impl LaneWriter {
    pub async fn write_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        match self {
            LaneWriter::Own(writer) => writer.write_frame(&frame).await,
            LaneWriter::Shared(outgoing) => outgoing
                .send(Outgoing::Frame(frame))
                .await
                .map_err(|_| ConnectionError::Dropped),
        }
    }

    /// Ends our direction: `close_notify` on a connection of its own, `Finish` (or
    /// `FinishAck`) on a shared one. Returns once that is on the wire.
    pub async fn shutdown(&mut self) -> Result<(), ConnectionError> {
        match self {
            LaneWriter::Own(writer) => writer.shutdown().await,
            LaneWriter::Shared(outgoing) => {
                let (done, written) = oneshot::channel();
                outgoing
                    .send(Outgoing::End(done))
                    .await
                    .map_err(|_| ConnectionError::Dropped)?;
                written.await.map_err(|_| ConnectionError::Dropped)
            }
        }
    }
}
