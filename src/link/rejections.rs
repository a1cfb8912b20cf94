//! How many `Rejected` lines a flood of strangers may cause. The first few in each
//! window are reported one by one; the rest are counted and reported as one number
//! when the window ends. Pure: the listener supplies the clock.
//!
//! This lives in the core rather than the front end because events travel on an
//! unbounded channel to a printing thread that a stalled terminal can block. A flood
//! reported connection by connection would grow that channel without bound, and it
//! buries the lines a user needs: one listener printed 37,538 `Rejected` lines in
//! 33 seconds.

use std::time::{Duration, Instant};

/// How long one window lasts.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Rejections reported one by one in each window; the rest are only counted.
pub const TOLD_PER_WINDOW: usize = 5;

/// Rejections counted but not reported one by one during one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub window: Duration,
}

/// What to do about one rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The previous window's summary, due before anything about this rejection.
    pub summary: Option<Summary>,
    /// Whether this rejection gets a line of its own.
    pub tell: bool,
}

/// The state of the current window. A window opens at the first rejection after the
/// previous one closed, so a quiet listener has no window and needs no timer.
#[derive(Debug, Default)]
pub struct Rejections {
    window: Option<Window>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    told: usize,
    counted: u64,
}

impl Rejections {
    /// Records one rejection at `now`, closing the window first if it is over.
    pub fn record(&mut self, now: Instant) -> Recorded {
        let summary = self.close_window(now);
        let window = self.window.get_or_insert(Window {
            opened: now,
            told: 0,
            counted: 0,
        });
        let tell = window.told < TOLD_PER_WINDOW;
        if tell {
            window.told += 1;
        } else {
            window.counted += 1;
        }
        Recorded { summary, tell }
    }

    /// Closes the window if `now` is past its end, returning what it counted
    /// without telling, if anything.
    pub fn close_window(&mut self, now: Instant) -> Option<Summary> {
        let window = self.window.as_ref()?;
        if now < window.opened + WINDOW {
            return None;
        }
        let window = self.window.take()?;
        (window.counted > 0).then_some(Summary {
            count: window.counted,
            window: WINDOW,
        })
    }

    /// When [`Rejections::close_window`] will have a summary to give, if the
    /// current window has counted anything.
    pub fn summary_due(&self) -> Option<Instant> {
        self.window
            .as_ref()
            .filter(|window| window.counted > 0)
            .map(|window| window.opened + WINDOW)
    }

    /// True when the rejection just recorded was the first one counted but not
    /// told in its window: from now on a summary is due.
    pub fn just_started_counting(&self) -> bool {
        self.window
            .as_ref()
            .is_some_and(|window| window.counted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(rejections: &mut Rejections, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| rejections.record(now).tell).count()
    }

    #[test]
    fn a_few_rejections_are_all_told_and_need_no_summary() {
        let start = Instant::now();
        let mut rejections = Rejections::default();
        assert_eq!(
            told(&mut rejections, start, TOLD_PER_WINDOW),
            TOLD_PER_WINDOW
        );
        assert_eq!(rejections.summary_due(), None);
        assert_eq!(rejections.close_window(start + WINDOW), None);
    }

    #[test]
    fn a_flood_is_told_a_few_times_then_counted_once_per_window() {
        let start = Instant::now();
        let mut rejections = Rejections::default();
        assert_eq!(told(&mut rejections, start, 3_417), TOLD_PER_WINDOW);
        assert_eq!(rejections.summary_due(), Some(start + WINDOW));
        assert_eq!(rejections.close_window(start + WINDOW / 2), None);
        assert_eq!(
            rejections.close_window(start + WINDOW),
            Some(Summary {
                count: 3_412,
                window: WINDOW
            })
        );
        assert_eq!(rejections.summary_due(), None);
        assert_eq!(rejections.close_window(start + 3 * WINDOW), None);
    }

    #[test]
    fn a_rejection_after_the_window_brings_its_summary_and_is_told_again() {
        let start = Instant::now();
        let mut rejections = Rejections::default();
        told(&mut rejections, start, TOLD_PER_WINDOW + 2);
        let later = rejections.record(start + WINDOW + Duration::from_millis(1));
        assert_eq!(
            later,
            Recorded {
                summary: Some(Summary {
                    count: 2,
                    window: WINDOW
                }),
                tell: true
            }
        );
    }

    #[test]
    fn counting_starts_with_the_first_untold_rejection() {
        let start = Instant::now();
        let mut rejections = Rejections::default();
        told(&mut rejections, start, TOLD_PER_WINDOW);
        assert!(!rejections.just_started_counting());
        rejections.record(start);
        assert!(rejections.just_started_counting());
        rejections.record(start);
        assert!(!rejections.just_started_counting());
    }

    #[test]
    fn a_sustained_flood_gets_a_bounded_number_of_lines_per_window() {
        let start = Instant::now();
        let mut rejections = Rejections::default();
        let (mut lines, mut summaries, mut counted) = (0, 0, 0);
        // 60 s of one rejection per millisecond.
        for ms in 0..60_000u64 {
            let recorded = rejections.record(start + Duration::from_millis(ms));
            lines += usize::from(recorded.tell);
            if let Some(summary) = recorded.summary {
                summaries += 1;
                counted += summary.count;
            }
        }
        assert_eq!(summaries, 5, "five windows closed, the sixth is open");
        assert_eq!(lines, 6 * TOLD_PER_WINDOW);
        assert_eq!(counted + lines as u64, 50_000 + TOLD_PER_WINDOW as u64);
    }
}
