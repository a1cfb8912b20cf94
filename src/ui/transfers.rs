//! What `/transfers` lists and `/cancel` picks from: every transfer of the session
//! and where it stands, kept from the events. Pure, shared by both front ends.

use indicatif::HumanBytes;

use super::lines;
use crate::session::event::{Event, FileCount, Phase, TransferId};
use crate::ui::sanitize::for_terminal;

/// How many finished transfers are remembered; older ones are forgotten first.
const MAX_FINISHED: usize = 100;

/// The session's transfers, oldest first.
#[derive(Debug, Default)]
pub struct TransferTable {
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    transfer: TransferId,
    name: String,
    size: u64,
    done: u64,
    /// For a folder, how many of its files are through.
    files: Option<FileCount>,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Hashing,
    Sending,
    Receiving,
    Ended(String),
}

impl TransferTable {
    /// Follows one event.
    pub fn observe(&mut self, event: &Event) {
        let sent = |id: &u64| TransferId {
            receiving: false,
            id: *id,
        };
        let arriving = |id: &u64| TransferId {
            receiving: true,
            id: *id,
        };
        match event {
            Event::TransferQueued { id, name, size } => {
                self.add(sent(id), name, *size, State::Hashing)
            }
            Event::TransferIncoming {
                id,
                name,
                size,
                run_start,
                ..
            } => {
                self.add(arriving(id), name, *size, State::Receiving);
                if let Some(row) = self.row(arriving(id)) {
                    row.done = *run_start;
                }
            }
            Event::TransferProgress {
                id,
                phase,
                done,
                files,
                ..
            } => {
                let transfer = match phase {
                    Phase::Receiving => arriving(id),
                    Phase::Hashing | Phase::Sending => sent(id),
                };
                if let Some(row) = self.row(transfer) {
                    if *phase == Phase::Sending {
                        row.state = State::Sending;
                    }
                    row.done = *done;
                    row.files = *files;
                }
            }
            Event::TransferSaved { id, path, .. } => self.end(
                arriving(id),
                format!("saved as {}", for_terminal(&path.display().to_string())),
            ),
            Event::TransferDelivered { id, .. } => {
                self.end(sent(id), "delivered and verified".into())
            }
            Event::TransferAlreadyThere { id, .. } => {
                self.end(sent(id), "the peer already had it; nothing sent".into())
            }
            Event::TransferInterrupted {
                id,
                receiving,
                reason,
                ..
            }
            | Event::TransferFailed {
                id,
                receiving,
                reason,
                ..
            } => {
                let transfer = TransferId {
                    receiving: *receiving,
                    id: *id,
                };
                self.end(transfer, for_terminal(reason).into_owned());
            }
            Event::TransferCancelled {
                id, receiving, by, ..
            } => {
                let transfer = TransferId {
                    receiving: *receiving,
                    id: *id,
                };
                let by = by.as_deref().map_or("you".into(), for_terminal);
                self.end(transfer, format!("cancelled by {by}"));
            }
            _ => {}
        }
    }

    /// The `/transfers` listing.
    pub fn listing(&self) -> Vec<String> {
        if self.rows.is_empty() {
            return vec!["No transfers yet".into()];
        }
        let mut lines = vec!["Transfers:".to_owned()];
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|row| (row.transfer.receiving, row.transfer.id));
        for row in rows {
            let name = for_terminal(&row.name);
            let size = HumanBytes(row.size);
            let done = HumanBytes(row.done);
            let files = row
                .files
                .as_ref()
                .map(lines::files_done)
                .unwrap_or_default();
            let line = match &row.state {
                State::Hashing => format!("hashing {name} ({size}), then sending it"),
                State::Sending => format!("sending {name}: {done} of {size}{files}"),
                State::Receiving => format!("receiving {name}: {done} of {size}{files}"),
                State::Ended(how) => format!("{name} ({size}): {how}"),
            };
            lines.push(format!("  {:<5} {line}", row.transfer.to_string()));
        }
        lines
    }

    /// Whether a transfer is queued, hashing or moving.
    pub fn any_running(&self) -> bool {
        (self.rows.iter()).any(|row| !matches!(row.state, State::Ended(_)))
    }

    /// Which transfer `/cancel` means: the one named, or the only one running.
    pub fn resolve(&self, named: Option<TransferId>) -> Result<TransferId, String> {
        let running: Vec<TransferId> = (self.rows.iter())
            .filter(|row| !matches!(row.state, State::Ended(_)))
            .map(|row| row.transfer)
            .collect();
        match (named, running.as_slice()) {
            (Some(transfer), _) if running.contains(&transfer) => Ok(transfer),
            (Some(transfer), _) => Err(format!(
                "{transfer} is not running; /transfers lists the transfers"
            )),
            (None, [only]) => Ok(*only),
            (None, []) => Err("no file is being sent or received".into()),
            (None, several) => Err(format!(
                "{} transfers are running ({}); say which, for example /cancel {}",
                several.len(),
                several
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                several[0]
            )),
        }
    }

    fn add(&mut self, transfer: TransferId, name: &str, size: u64, state: State) {
        self.rows.retain(|row| row.transfer != transfer);
        self.rows.push(Row {
            transfer,
            name: name.to_owned(),
            size,
            done: 0,
            files: None,
            state,
        });
        let finished = (self.rows.iter())
            .filter(|row| matches!(row.state, State::Ended(_)))
            .count();
        if finished > MAX_FINISHED
            && let Some(oldest) =
                (self.rows.iter()).position(|row| matches!(row.state, State::Ended(_)))
        {
            self.rows.remove(oldest);
        }
    }

    fn row(&mut self, transfer: TransferId) -> Option<&mut Row> {
        self.rows.iter_mut().find(|row| row.transfer == transfer)
    }

    fn end(&mut self, transfer: TransferId, how: String) {
        if let Some(row) = self.row(transfer) {
            if !matches!(row.state, State::Ended(_)) {
                row.done = row.size;
            }
            row.state = State::Ended(how);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> TransferId {
        text.parse().unwrap()
    }

    #[test]
    fn lists_each_transfer_where_it_stands_and_resolves_a_bare_cancel() {
        let mut table = TransferTable::default();
        assert_eq!(table.listing(), ["No transfers yet"]);
        assert!(table.resolve(None).is_err());
        table.observe(&Event::TransferQueued {
            id: 1,
            name: "a.bin".into(),
            size: 2048,
        });
        table.observe(&Event::TransferProgress {
            id: 1,
            phase: Phase::Sending,
            done: 1024,
            total: 2048,
            files: None,
            run_start: 0,
        });
        assert_eq!(table.resolve(None), Ok(id("s1")));
        table.observe(&Event::TransferIncoming {
            id: 1,
            name: "b.txt".into(),
            size: 10,
            from: "bob".into(),
            run_start: 0,
        });
        let several = table.resolve(None).unwrap_err();
        assert!(several.contains("(s1, r1)"), "{several}");
        assert_eq!(table.resolve(Some(id("r1"))), Ok(id("r1")));
        table.observe(&Event::TransferFailed {
            id: 1,
            name: "b.txt".into(),
            receiving: true,
            reason: "cancelled".into(),
        });
        assert!(table.resolve(Some(id("r1"))).is_err());
        assert_eq!(
            table.listing(),
            [
                "Transfers:",
                "  s1    sending a.bin: 1.00 KiB of 2.00 KiB",
                "  r1    b.txt (10 B): cancelled",
            ]
        );
    }

    #[test]
    fn transfer_ids_read_back_as_written() {
        for text in ["s1", "r42"] {
            assert_eq!(id(text).to_string(), text);
        }
        for bad in ["", "x1", "s", "s-1", "1"] {
            assert!(bad.parse::<TransferId>().is_err(), "{bad}");
        }
    }
}
