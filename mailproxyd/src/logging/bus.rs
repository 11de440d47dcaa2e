//! The log bus: a `tracing` layer that turns log records into
//! [`LogLine`]s on a broadcast channel, for management clients subscribed
//! with `EVENTS <level>`.
//!
//! Sending never blocks: a subscriber that reads too slowly loses the oldest
//! lines and is told how many (`RecvError::Lagged`). Records are only
//! formatted at levels someone subscribed to: the layer's filter follows the
//! most verbose live subscription, and the callsite interest cache is rebuilt
//! when that changes, so with no subscriber a disabled `debug!` costs what it
//! did before. The layer never logs itself (no feedback loop).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use mailproxy_proto::{Level, LogLine};
use tokio::sync::broadcast;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};

/// Lines buffered per subscriber before it lags.
pub const CAPACITY: usize = 1024;

/// Longest message (with its fields) put on a line, in bytes.
const MAX_MESSAGE: usize = 8 * 1024;

/// Levels in order, indexed by their rank (`Off` = 0 .. `Trace` = 5).
const LEVELS: [Level; 6] = [
    Level::Off,
    Level::Error,
    Level::Warn,
    Level::Info,
    Level::Debug,
    Level::Trace,
];

fn rank(level: Level) -> u8 {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0) as u8
}

fn from_tracing(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<LogLine>,
    /// Rank of the most verbose live subscription.
    max: AtomicU8,
    /// Live subscriptions per rank.
    counts: Mutex<[usize; 6]>,
}

impl Inner {
    fn max(&self) -> Level {
        LEVELS[usize::from(self.max.load(Ordering::Relaxed)).min(5)]
    }

    /// Adds `delta` subscriptions at `level`; rebuilds the callsite cache
    /// when the most verbose level changes.
    fn adjust(&self, level: Level, add: bool) {
        let changed = {
            let mut counts = match self.counts.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            let slot = &mut counts[usize::from(rank(level))];
            *slot = if add {
                slot.saturating_add(1)
            } else {
                slot.saturating_sub(1)
            };
            let max = (1..6u8)
                .rev()
                .find(|r| counts[usize::from(*r)] > 0)
                .unwrap_or(0);
            self.max.swap(max, Ordering::Relaxed) != max
        };
        if changed {
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// A cheap, cloneable handle on the log bus.
#[derive(Debug, Clone)]
pub struct LogBus {
    inner: Arc<Inner>,
}

impl Default for LogBus {
    fn default() -> Self {
        LogBus::new(CAPACITY)
    }
}

/// The process-wide bus that [`super::init_with`] installs.
pub fn bus() -> LogBus {
    static BUS: OnceLock<LogBus> = OnceLock::new();
    BUS.get_or_init(LogBus::default).clone()
}

impl LogBus {
    /// A bus buffering `capacity` lines per slow subscriber.
    pub fn new(capacity: usize) -> LogBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        LogBus {
            inner: Arc::new(Inner {
                tx,
                max: AtomicU8::new(0),
                counts: Mutex::new([0; 6]),
            }),
        }
    }

    /// The `tracing` layer that feeds this bus (with its level filter).
    pub fn layer<S>(&self) -> Filtered<BusLayer, BusFilter, S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        BusLayer {
            inner: self.inner.clone(),
        }
        .with_filter(BusFilter {
            inner: self.inner.clone(),
        })
    }

    /// Subscribes to lines at `level` or more severe, from now on.
    /// [`Level::Off`] receives nothing.
    pub fn subscribe(&self, level: Level) -> LogSubscription {
        // Subscribe to the channel first, so no line admitted after the
        // filter widens is missed.
        let rx = self.inner.tx.subscribe();
        self.inner.adjust(level, true);
        LogSubscription {
            rx,
            level,
            inner: self.inner.clone(),
        }
    }

    /// The most verbose level anyone listens at now.
    pub fn max_level(&self) -> Level {
        self.inner.max()
    }

    /// Sends a line to the subscribers that admit it (for tests and for
    /// records that do not come from `tracing`). Never blocks.
    pub fn send(&self, line: LogLine) {
        if self.inner.max().admits(line.level) {
            let _ = self.inner.tx.send(line);
        }
    }
}

/// One subscriber's view of the bus; unsubscribes on drop.
#[derive(Debug)]
pub struct LogSubscription {
    rx: broadcast::Receiver<LogLine>,
    level: Level,
    inner: Arc<Inner>,
}

impl LogSubscription {
    /// The next line at the subscribed level. `Err(Lagged(n))` when up to
    /// `n` lines were lost because this subscriber read too slowly.
    pub async fn recv(&mut self) -> Result<LogLine, broadcast::error::RecvError> {
        loop {
            let line = self.rx.recv().await?;
            if self.level.admits(line.level) {
                return Ok(line);
            }
        }
    }

    /// The next line already received, without waiting.
    pub fn try_recv(&mut self) -> Result<LogLine, broadcast::error::TryRecvError> {
        loop {
            let line = self.rx.try_recv()?;
            if self.level.admits(line.level) {
                return Ok(line);
            }
        }
    }

    /// The subscribed level.
    pub fn level(&self) -> Level {
        self.level
    }
}

impl Drop for LogSubscription {
    fn drop(&mut self) {
        self.inner.adjust(self.level, false);
    }
}

/// The layer: formats each admitted event into a [`LogLine`] and sends it.
#[derive(Debug)]
pub struct BusLayer {
    inner: Arc<Inner>,
}

impl<S: Subscriber> Layer<S> for BusLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if self.inner.tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        message.push_str(&visitor.fields);
        truncate(&mut message, MAX_MESSAGE);
        // An error only means the last subscriber just left.
        let _ = self.inner.tx.send(LogLine {
            time_ms: now_ms(),
            level: from_tracing(meta.level()),
            target: meta.target().to_owned(),
            message,
        });
    }
}

/// The layer's filter: events at the most verbose subscribed level.
#[derive(Debug)]
pub struct BusFilter {
    inner: Arc<Inner>,
}

impl BusFilter {
    /// Dependencies' records are held at [`super::DEPENDENCY_LEVEL`], as in
    /// the log output.
    fn admits(&self, meta: &Metadata<'_>) -> bool {
        let level = from_tracing(meta.level());
        meta.is_event()
            && self.inner.max().admits(level)
            && super::passes_dependency_cap(meta.target(), level)
    }
}

impl<S> Filter<S> for BusFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.admits(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Rebuilt whenever the subscribed level changes.
        if self.admits(meta) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(super::level_filter(self.inner.max()))
    }
}

/// Collects the message and the other fields as `key=value`, the way the
/// log file shows them.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl tracing::field::Visit for LineVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if name == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !name.starts_with("log.") {
            let _ = write!(self.fields, " {name}={value:?}");
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn line(level: Level, msg: &str) -> LogLine {
        LogLine {
            time_ms: 1,
            level,
            target: "t".into(),
            message: msg.into(),
        }
    }

    #[tokio::test]
    async fn subscribers_get_lines_at_their_level_and_the_filter_follows_them() {
        let bus = LogBus::new(16);
        assert_eq!(bus.max_level(), Level::Off);
        let mut info = bus.subscribe(Level::Info);
        assert_eq!(bus.max_level(), Level::Info);
        {
            let _debug = bus.subscribe(Level::Debug);
            assert_eq!(bus.max_level(), Level::Debug);
        }
        assert_eq!(bus.max_level(), Level::Info, "dropping restores the level");
        bus.send(line(Level::Debug, "not for anyone"));
        bus.send(line(Level::Warn, "w"));
        assert_eq!(info.recv().await.unwrap().message, "w");
        drop(info);
        assert_eq!(bus.max_level(), Level::Off);
    }

    #[tokio::test]
    async fn the_layer_formats_events_with_fields_at_the_subscribed_level() {
        let bus = LogBus::new(16);
        let subscriber = tracing_subscriber::registry().with(bus.layer());
        let mut sub = bus.subscribe(Level::Info);
        tracing::subscriber::with_default(subscriber, || {
            // Interest is cached per callsite; the scoped dispatcher was
            // registered after the subscription, so this is current.
            tracing::debug!("hidden");
            tracing::info!(count = 3, name = "x y", "hello %s");
            tracing::warn!(target: "other", "careful");
        });
        let first = sub.recv().await.unwrap();
        assert_eq!(first.level, Level::Info);
        assert_eq!(first.message, "hello %s count=3 name=\"x y\"");
        assert!(first.target.contains("bus"), "{}", first.target);
        assert!(first.time_ms > 1_600_000_000_000);
        let second = sub.recv().await.unwrap();
        assert_eq!(
            (second.level, second.target.as_str()),
            (Level::Warn, "other")
        );
        assert!(matches!(
            sub.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }

    #[tokio::test]
    async fn dependencies_debug_and_trace_stay_out_of_the_stream() {
        let bus = LogBus::new(16);
        let subscriber = tracing_subscriber::registry().with(bus.layer());
        let mut sub = bus.subscribe(Level::Trace);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "mio::poll", "registering event source");
            tracing::debug!(target: "hyper::proto", "flushed");
            tracing::info!(target: "hyper::proto", "dependency info");
            tracing::trace!("own trace");
        });
        let first = sub.recv().await.unwrap();
        assert_eq!(
            (first.message.as_str(), first.target.as_str()),
            ("dependency info", "hyper::proto")
        );
        assert_eq!(sub.recv().await.unwrap().message, "own trace");
        assert!(matches!(
            sub.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_and_senders_never_block() {
        let bus = LogBus::new(4);
        let mut sub = bus.subscribe(Level::Trace);
        for i in 0..10 {
            bus.send(line(Level::Error, &i.to_string()));
        }
        match sub.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(sub.recv().await.unwrap().message, "6");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(10);
        truncate(&mut s, 5);
        assert_eq!(s, "éé…");
    }
}
