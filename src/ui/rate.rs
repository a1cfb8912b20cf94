//! How fast a transfer moves, as its bar and closing line say: only the bytes of
//! this run count. What an earlier run kept arrived in another run, at another
//! speed, and a resumed bar that counted it would start at terabytes a second.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, ProgressState, ProgressStyle};

/// Below this many bytes moved, a run's closing line gives no rate: a small file's
/// time is round trips and hashing, and its rate would say nothing of the link.
const RATE_FROM: u64 = 1 << 20;

/// One run of a transfer's bytes, as a front end sees it go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Where its bytes began: not 0 when it resumed what an earlier run kept.
    start: u64,
    /// The first position seen in this run, and when. Speeds are measured from it,
    /// not from `start`: the bytes before it moved in a time not seen.
    seen: u64,
    since: Instant,
}

impl Run {
    /// A run that began at byte `start`, first seen at `position` at `now`.
    pub fn new(start: u64, position: u64, now: Instant) -> Run {
        Run {
            start,
            seen: position.max(start),
            since: now,
        }
    }

    /// Where its bytes began.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes a second since the run was first seen, by `position` at `now`; none
    /// before it has moved, rather than a guess, and none under a byte a second,
    /// which would read `0 B/s`.
    pub fn rate(&self, position: u64, now: Instant) -> Option<f64> {
        let moved = position.checked_sub(self.seen).filter(|&moved| moved > 0)?;
        let seconds = now.saturating_duration_since(self.since).as_secs_f64();
        (seconds > 0.0)
            .then(|| moved as f64 / seconds)
            .filter(|&rate| rate >= 1.0)
    }

    /// How long the rest of `total` takes at that rate.
    pub fn eta(&self, position: u64, total: u64, now: Instant) -> Option<Duration> {
        let rate = self.rate(position, now)?;
        Duration::try_from_secs_f64(total.saturating_sub(position) as f64 / rate).ok()
    }

    /// What a bar shows after its bytes: ` 120.00 MiB/s ETA 4s`; nothing before a
    /// speed is known.
    pub fn speed(&self, position: u64, total: u64, now: Instant) -> String {
        let mut shown = String::new();
        if let Some(rate) = self.rate(position, now) {
            let _ = write!(shown, " {}/s", HumanBytes(rate as u64));
            if let Some(eta) = self.eta(position, total, now) {
                let _ = write!(shown, " ETA {:#}", HumanDuration(eta));
            }
        }
        shown
    }

    /// The closing line's account of a run that ended with all `size` bytes at
    /// `now`: `3.00 GiB in 4.1 s, 750.00 MiB/s`, and for a resumed one what this run
    /// moved of the whole: `1.40 GiB of 3.00 GiB in 4.1 s, 350.00 MiB/s`. A run
    /// that moved less than [`RATE_FROM`] gives no rate: `24 B in 0.1 s`.
    pub fn summary(&self, size: u64, now: Instant) -> String {
        let seconds = now.saturating_duration_since(self.since).as_secs_f64();
        let mut shown = if self.start > 0 {
            format!(
                "{} of {}",
                HumanBytes(size.saturating_sub(self.start)),
                HumanBytes(size)
            )
        } else {
            HumanBytes(size).to_string()
        };
        let _ = write!(shown, " in {seconds:.1} s");
        let moved = size.saturating_sub(self.seen);
        if let Some(rate) = self.rate(size, now).filter(|_| moved >= RATE_FROM) {
            let _ = write!(shown, ", {}/s", HumanBytes(rate as u64));
        }
        shown
    }
}

/// `style` with a `{speed}` key that shows [`Run::speed`] for `run`.
pub fn with_speed(style: ProgressStyle, run: Run) -> ProgressStyle {
    style.with_key(
        "speed",
        move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let total = state.len().unwrap_or(0);
            let _ = out.write_str(&run.speed(state.pos(), total, Instant::now()));
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn after(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_resumed_run_counts_only_the_bytes_it_moved() {
        let t0 = Instant::now();
        // 1.6 GiB were kept; this run was first seen 64 KiB further on.
        let run = Run::new(1_600 * MIB, 1_600 * MIB + 64 * 1024, t0);
        assert_eq!(
            run.rate(1_600 * MIB + 64 * 1024, t0),
            None,
            "nothing moved yet"
        );
        assert_eq!(run.speed(1_600 * MIB + 64 * 1024, 3 * GIB, t0), "");
        let rate = run.rate(1_600 * MIB + 64 * 1024 + 200 * MIB, after(t0, 500));
        assert_eq!(rate, Some((400 * MIB) as f64));
        assert_eq!(
            run.speed(1_600 * MIB + 64 * 1024 + 200 * MIB, 3 * GIB, after(t0, 500)),
            " 400.00 MiB/s ETA 3s"
        );
    }

    #[test]
    fn no_time_or_no_bytes_is_no_speed() {
        let t0 = Instant::now();
        let run = Run::new(0, 0, t0);
        assert_eq!(run.rate(10 * MIB, t0), None, "no time has passed");
        assert_eq!(run.rate(0, after(t0, 1_000)), None, "no byte has moved");
        assert_eq!(run.eta(0, GIB, after(t0, 1_000)), None);
        assert_eq!(
            run.rate(10 * MIB, after(t0, 1_000)),
            Some((10 * MIB) as f64)
        );
        assert_eq!(
            run.eta(10 * MIB, 20 * MIB, after(t0, 1_000)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_position_before_the_first_seen_is_no_speed() {
        let t0 = Instant::now();
        let run = Run::new(0, 5 * MIB, t0);
        assert_eq!(run.rate(MIB, after(t0, 1_000)), None);
        assert_eq!(Run::new(8, 2, t0).rate(8, after(t0, 1_000)), None);
    }

    #[test]
    fn the_summary_of_a_fresh_run_counts_the_whole_file() {
        let t0 = Instant::now();
        let run = Run::new(0, 0, t0);
        assert_eq!(
            run.summary(3 * GIB, after(t0, 4_000)),
            "3.00 GiB in 4.0 s, 768.00 MiB/s"
        );
    }

    #[test]
    fn the_summary_of_a_resumed_run_names_what_it_moved_of_the_whole() {
        let t0 = Instant::now();
        let run = Run::new(GIB, GIB, t0);
        assert_eq!(
            run.summary(3 * GIB, after(t0, 4_000)),
            "2.00 GiB of 3.00 GiB in 4.0 s, 512.00 MiB/s"
        );
    }

    #[test]
    fn a_small_file_or_a_crawl_gives_no_rate() {
        let t0 = Instant::now();
        let run = Run::new(0, 0, t0);
        assert_eq!(run.summary(24, after(t0, 500)), "24 B in 0.5 s");
        assert_eq!(run.summary(24, after(t0, 1)), "24 B in 0.0 s");
        assert_eq!(run.rate(24, after(t0, 30_000)), None, "under 1 B/s");
        assert_eq!(run.speed(24, 100, after(t0, 30_000)), "");
        assert_eq!(
            run.summary(MIB, after(t0, 1_000)),
            "1.00 MiB in 1.0 s, 1.00 MiB/s"
        );
    }

    #[test]
    fn the_summary_of_a_run_seen_only_at_its_end_gives_no_speed() {
        let t0 = Instant::now();
        let run = Run::new(0, 24, t0);
        assert_eq!(run.summary(24, after(t0, 100)), "24 B in 0.1 s");
    }
}
