//! Half-duplex listening: the microphone is not used while voicegate makes
//! a sound, nor for a short tail after it.
//!
//! Why: without an echo canceller the microphone hears the loudspeaker. A
//! read-back ("Order 1 paper towels?") is itself a purchase sentence, so a
//! device that listened to itself could supersede or even answer its own
//! question. So every sound voicegate makes (the TTS, the wake chime, the
//! ringing) is announced to one shared [`HalfDuplex`], and the input side
//! treats what it captured in that time as silence:
//!
//! - the microphone's capture callback pushes zeros while
//!   [`HalfDuplex::muted_at`] says so (capture time is what matters: the
//!   reader may be behind);
//! - paced input (`--realtime`, raw PCM on stdin) has frames read while
//!   muted zeroed by the daemon's audio thread;
//! - file input read faster than real time (the daemon's audio clock)
//!   waits until no playback is in progress, then skips as many samples as
//!   the playback lasted in wall time plus the tail
//!   ([`HalfDuplex::wait_idle`]): what a live microphone would have
//!   missed.
//!
//! Whoever makes a sound holds a [`Playback`] for exactly as long as it
//! plays: [`HalfDuplex::hold`] (dropping it ends the playback). An output
//! callback, which may not lock, uses [`Playback::set`], which only touches
//! atomics. The tail ([`DEFAULT_TAIL`], `[speech] echo_tail_ms`) covers the
//! room's echo and the output device's buffering.
//!
//! Everything the input side reads is atomic: [`HalfDuplex::muted_at`] is
//! safe in a real-time callback. Only [`HalfDuplex::wait_idle`] blocks (a
//! condition variable, with a short timeout so an output callback that
//! cannot notify is still seen).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the microphone stays muted after a sound ends, by default:
/// room echo and the output device's buffer.
pub const DEFAULT_TAIL: Duration = Duration::from_millis(400);

/// How often [`HalfDuplex::wait_idle`] looks again without a notification.
const POLL: Duration = Duration::from_millis(20);

/// The shared monitor of voicegate's own sounds (see the module docs).
#[derive(Debug)]
pub struct HalfDuplex {
    /// Times below are nanoseconds since this instant.
    epoch: Instant,
    tail: Duration,
    /// Playbacks in progress.
    playing: AtomicU64,
    /// When the last playback ended (ns since `epoch`, plus 1; 0: never).
    last_end: AtomicU64,
    /// When the current busy stretch (some playback in progress) began.
    busy_since: AtomicU64,
    /// Total length of all finished busy stretches (ns), and their count.
    busy_total: AtomicU64,
    stretches: AtomicU64,
    /// For [`HalfDuplex::wait_idle`].
    lock: Mutex<()>,
    idle: Condvar,
}

impl HalfDuplex {
    /// A monitor muting for `tail` after each sound.
    pub fn new(tail: Duration) -> Arc<HalfDuplex> {
        Arc::new(HalfDuplex {
            epoch: Instant::now(),
            tail,
            playing: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
            busy_total: AtomicU64::new(0),
            stretches: AtomicU64::new(0),
            lock: Mutex::new(()),
            idle: Condvar::new(),
        })
    }

    /// The tail after each sound.
    pub fn tail(&self) -> Duration {
        self.tail
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A sound starts now; it ends when the returned guard is dropped.
    pub fn hold(self: &Arc<Self>) -> Playback {
        let mut playback = Playback {
            duplex: Arc::clone(self),
            on: false,
        };
        playback.set(true);
        playback
    }

    /// A guard that is not playing yet: for an output callback that turns
    /// it on and off with [`Playback::set`].
    pub fn idle_playback(self: &Arc<Self>) -> Playback {
        Playback {
            duplex: Arc::clone(self),
            on: false,
        }
    }

    fn start(&self) {
        if self.playing.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy_since
                .store(self.nanos(Instant::now()), Ordering::Release);
        }
    }

    fn end(&self) {
        let now = self.nanos(Instant::now());
        // Stored before the count drops, so a reader that sees the count at
        // zero also sees this end.
        self.last_end.fetch_max(now + 1, Ordering::AcqRel);
        if self.playing.fetch_sub(1, Ordering::AcqRel) == 1 {
            let since = self.busy_since.load(Ordering::Acquire);
            self.busy_total
                .fetch_add(now.saturating_sub(since), Ordering::AcqRel);
            self.stretches.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether input captured at `at` (about now: the question is asked as
    /// audio arrives) must be ignored: a sound is playing, or the last one
    /// ended less than the tail before `at`. Atomics only.
    pub fn muted_at(&self, at: Instant) -> bool {
        if self.playing.load(Ordering::Acquire) > 0 {
            return true;
        }
        match self.last_end.load(Ordering::Acquire) {
            0 => false,
            end => self.nanos(at) < (end - 1).saturating_add(self.tail_nanos()),
        }
    }

    fn tail_nanos(&self) -> u64 {
        u64::try_from(self.tail.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a sound is playing now.
    pub fn playing(&self) -> bool {
        self.playing.load(Ordering::Acquire) > 0
    }

    /// A mark of what has been played so far, for [`HalfDuplex::wait_idle`].
    pub fn mark(&self) -> Mark {
        Mark {
            busy_total: self.busy_total.load(Ordering::Acquire),
            stretches: self.stretches.load(Ordering::Acquire),
        }
    }

    /// For input read faster than real time: waits until nothing plays,
    /// then says how much sound a live microphone would have had to ignore
    /// since `mark` (the busy time plus one tail; zero if nothing played),
    /// and moves `mark` on.
    pub fn wait_idle(&self, mark: &mut Mark) -> Duration {
        if self.playing() {
            let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            while self.playing() {
                guard = match self.idle.wait_timeout(guard, POLL) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        let now = self.mark();
        if now.stretches == mark.stretches {
            return Duration::ZERO;
        }
        let busy = now.busy_total.saturating_sub(mark.busy_total);
        *mark = now;
        Duration::from_nanos(busy) + self.tail
    }

    fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.idle.notify_all();
    }
}

/// What had been played at some point (see [`HalfDuplex::wait_idle`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    busy_total: u64,
    stretches: u64,
}

/// One of voicegate's sounds, while it plays. Dropping it ends it.
#[derive(Debug)]
pub struct Playback {
    duplex: Arc<HalfDuplex>,
    on: bool,
}

impl Playback {
    /// Turns the sound on or off: atomics only, so an output callback may
    /// call it (waiters see the change within a few milliseconds).
    pub fn set(&mut self, on: bool) {
        if on != self.on {
            self.on = on;
            if on {
                self.duplex.start();
            } else {
                self.duplex.end();
            }
        }
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        if self.on {
            self.set(false);
            self.duplex.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muted_while_playing_and_for_the_tail() {
        let duplex = HalfDuplex::new(Duration::from_millis(200));
        let before = Instant::now();
        assert!(!duplex.muted_at(before), "nothing played yet");
        let a = duplex.hold();
        let b = duplex.hold();
        assert!(duplex.muted_at(Instant::now()));
        drop(a);
        assert!(duplex.muted_at(Instant::now()), "one still plays");
        drop(b);
        let ended = Instant::now();
        assert!(duplex.muted_at(ended), "within the tail");
        assert!(!duplex.muted_at(ended + Duration::from_millis(250)));
    }

    #[test]
    fn a_callback_toggles_without_a_guard_drop() {
        let duplex = HalfDuplex::new(Duration::ZERO);
        let mut p = duplex.idle_playback();
        assert!(!duplex.playing());
        p.set(true);
        p.set(true);
        assert!(duplex.playing());
        p.set(false);
        assert!(!duplex.playing());
        p.set(true);
        drop(p);
        assert!(!duplex.playing());
    }

    #[test]
    fn waiting_reports_what_was_played_since_the_mark() {
        let duplex = HalfDuplex::new(Duration::from_millis(100));
        let mut mark = duplex.mark();
        assert_eq!(duplex.wait_idle(&mut mark), Duration::ZERO);
        let guard = duplex.hold();
        let d = Arc::clone(&duplex);
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let skipped = d.wait_idle(&mut mark);
            (start.elapsed(), skipped, mark)
        });
        std::thread::sleep(Duration::from_millis(150));
        drop(guard);
        let (waited, skipped, mut mark) = waiter.join().expect("waiter");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        // 150 ms played, plus the 100 ms tail.
        assert!(
            skipped >= Duration::from_millis(250) && skipped < Duration::from_millis(600),
            "{skipped:?}"
        );
        assert_eq!(duplex.wait_idle(&mut mark), Duration::ZERO, "counted once");
    }
}
