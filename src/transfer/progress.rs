//! Progress reports: bytes for every transfer, and for a folder also its files,
//! each told as it completes (the front end shows those only when verbose).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::session::event::{Event, FileCount, Phase};

/// How often progress is reported at most, so events never flood the front end.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// A folder's files in the order their bytes travel: each one's path and where in
/// the folder's byte sequence it ends.
pub struct FileList {
    /// The path of the file at an index, made when it is told.
    path: Box<dyn Fn(usize) -> String + Send>,
    ends: Vec<u64>,
    done: usize,
}

impl std::fmt::Debug for FileList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileList")
            .field("files", &self.ends.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl FileList {
    pub fn new(files: impl IntoIterator<Item = (String, u64)>) -> Self {
        let (paths, sizes): (Vec<String>, Vec<u64>) = files.into_iter().unzip();
        FileList::from_fn(sizes, move |index| paths[index].clone())
    }

    /// The files of `sizes`, whose paths `path` makes from their indexes when they
    /// are told, so that a list need not hold every path at once.
    pub fn from_fn(
        sizes: impl IntoIterator<Item = u64>,
        path: impl Fn(usize) -> String + Send + 'static,
    ) -> Self {
        let ends = (sizes.into_iter())
            .scan(0u64, |end, size| {
                *end = end.saturating_add(size);
                Some(*end)
            })
            .collect();
        FileList {
            path: Box::new(path),
            ends,
            done: 0,
        }
    }

    fn size(&self, index: usize) -> u64 {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        self.ends[index] - start
    }

    /// Marks the files within the first `bytes` as done; returns those newly so.
    fn advance(&mut self, bytes: u64) -> std::ops::Range<usize> {
        let before = self.done;
        self.done = self
            .done
            .max(self.ends.partition_point(|end| *end <= bytes));
        before..self.done
    }

    fn count(&self) -> FileCount {
        FileCount {
            done: self.done,
            total: self.ends.len(),
        }
    }
}

/// Reports progress of one transfer phase, at most every [`PROGRESS_INTERVAL`] and
/// always at the end. The first update only marks where this run starts, and is
/// sent only if it is also the end: a receiver's disk thread makes it before the
/// front end has heard of the transfer. The next one is sent at once. Every report
/// carries where the run started, so that no front end takes the bytes an earlier
/// run moved for speed.
pub struct ProgressReporter {
    events: mpsc::UnboundedSender<Event>,
    id: u64,
    phase: Phase,
    total: u64,
    files: Option<FileList>,
    /// Where this run started: the first update.
    run_start: Option<u64>,
    last: Option<Instant>,
}

impl ProgressReporter {
    pub fn new(events: mpsc::UnboundedSender<Event>, id: u64, phase: Phase, total: u64) -> Self {
        ProgressReporter {
            events,
            id,
            phase,
            total,
            files: None,
            run_start: None,
            last: None,
        }
    }

    /// Counts `files` as well as bytes, and tells of each file as its last byte
    /// passes. The first report says where this run starts: the files before it
    /// were done by an earlier one, and are counted but not told again.
    pub fn with_files(mut self, files: FileList) -> Self {
        self.files = Some(files);
        self
    }

    pub fn update(&mut self, done: u64) {
        let first = self.run_start.is_none();
        let run_start = *self.run_start.get_or_insert(done);
        let resumed = first && done > 0;
        if let Some(files) = &mut self.files {
            let newly = files.advance(done);
            for index in newly.filter(|_| !resumed) {
                let _ = self.events.send(Event::TransferFileDone {
                    id: self.id,
                    receiving: self.phase == Phase::Receiving,
                    path: (files.path)(index),
                    size: files.size(index),
                });
            }
        }
        let due = !first && (self.last).is_none_or(|last| last.elapsed() >= PROGRESS_INTERVAL);
        if due || done == self.total {
            self.last = Some(Instant::now());
            let _ = self.events.send(Event::TransferProgress {
                id: self.id,
                phase: self.phase,
                done,
                total: self.total,
                files: self.files.as_ref().map(FileList::count),
                run_start,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(events: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    /// The files told, as (id, receiving, path, size).
    fn told(events: &[Event]) -> Vec<(u64, bool, &str, u64)> {
        (events.iter())
            .filter_map(|event| match event {
                Event::TransferFileDone {
                    id,
                    receiving,
                    path,
                    size,
                } => Some((*id, *receiving, path.as_str(), *size)),
                _ => None,
            })
            .collect()
    }

    fn files() -> FileList {
        FileList::new([
            ("a".to_owned(), 10),
            ("empty".to_owned(), 0),
            ("b/c".to_owned(), 5),
        ])
    }

    #[test]
    fn a_file_is_done_when_its_last_byte_has_passed_and_an_empty_one_with_it() {
        let mut list = files();
        assert_eq!(list.advance(0), 0..0);
        assert_eq!(list.advance(9), 0..0);
        assert_eq!(list.advance(10), 0..2);
        assert_eq!(list.advance(14), 2..2);
        assert_eq!(list.advance(15), 2..3);
        assert_eq!(list.advance(15), 3..3);
    }

    #[test]
    fn a_resumed_folder_counts_what_arrived_before_without_telling_it_again() {
        let mut list = files();
        assert_eq!(list.advance(12), 0..2);
        assert_eq!(list.advance(3), 2..2, "progress never goes back");
        assert_eq!(list.count(), FileCount { done: 2, total: 3 });
    }

    #[test]
    fn each_file_is_told_once_and_the_count_travels_with_the_bytes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut reporter = ProgressReporter::new(tx, 7, Phase::Receiving, 15).with_files(files());
        reporter.update(0);
        reporter.update(10);
        reporter.update(15);
        let events = drain(&mut rx);
        assert_eq!(
            told(&events),
            [
                (7, true, "a", 10),
                (7, true, "empty", 0),
                (7, true, "b/c", 5)
            ]
        );
        let last = events.iter().rev().find_map(|event| match event {
            Event::TransferProgress { done, files, .. } => Some((*done, *files)),
            _ => None,
        });
        assert_eq!(last, Some((15, Some(FileCount { done: 3, total: 3 }))));
    }

    /// The `done` of each progress report among `events`.
    fn reported(events: &[Event]) -> Vec<u64> {
        (events.iter())
            .filter_map(|event| match event {
                Event::TransferProgress { done, .. } => Some(*done),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_first_update_marks_the_start_unsent_and_the_next_goes_at_once() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut reporter = ProgressReporter::new(tx, 7, Phase::Receiving, 15).with_files(files());
        reporter.update(10);
        assert_eq!(reported(&drain(&mut rx)), [0u64; 0]);
        reporter.update(12);
        assert_eq!(reported(&drain(&mut rx)), [12]);
        reporter.update(15);
        assert_eq!(reported(&drain(&mut rx)), [15], "and always at the end");
    }

    #[test]
    fn every_report_carries_where_the_run_started() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut reporter = ProgressReporter::new(tx, 7, Phase::Sending, 100);
        reporter.update(40);
        reporter.update(50);
        reporter.update(100);
        let starts: Vec<u64> = (drain(&mut rx).iter())
            .filter_map(|event| match event {
                Event::TransferProgress { run_start, .. } => Some(*run_start),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [40, 40]);
    }

    #[test]
    fn a_resumed_run_counts_the_files_sent_before_but_tells_only_its_own() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut reporter = ProgressReporter::new(tx, 7, Phase::Sending, 15).with_files(files());
        reporter.update(12);
        reporter.update(15);
        assert_eq!(told(&drain(&mut rx)), [(7, false, "b/c", 5)]);
    }

    #[test]
    fn a_single_file_reports_bytes_only() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut reporter = ProgressReporter::new(tx, 1, Phase::Sending, 4);
        reporter.update(4);
        assert_eq!(
            drain(&mut rx),
            [Event::TransferProgress {
                id: 1,
                phase: Phase::Sending,
                done: 4,
                total: 4,
                files: None,
                run_start: 4,
            }]
        );
    }
}
