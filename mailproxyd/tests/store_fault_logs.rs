//! What the store logs through a failure episode: one warning with the OS
//! error when it starts failing, one info line when it recovers, and
//! nothing per retry at those levels. (Its own test binary: it installs the
//! global tracing subscriber, which the writer thread logs to.)

mod store_support;

use std::sync::{Arc, Mutex};

use mailproxyd::store::{Fault, Faults, KeySource, KvTable, Op, Store};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Level, String)>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: Subscriber> Layer<S> for Seen {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("mailproxyd::store") {
            return;
        }
        let mut text = String::new();
        event.record(&mut Text(&mut text));
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text));
    }
}

#[test]
fn one_warning_and_one_recovery_line_per_episode() {
    let seen = Seen::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(seen.clone()))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    f.fail_all(Op::Write, Fault::NoSpace);
    assert!(s.kv_put(KvTable::Meta, b"k", b"v").is_err());
    // Let the writer retry several times (each retry writes).
    store_support::wait_retries(&f, 3);
    f.clear();
    store_support::wait_ok(&s);
    let seen = seen.0.lock().unwrap().clone();
    let at = |l: Level| seen.iter().filter(|(lv, _)| *lv == l).collect::<Vec<_>>();
    let warns = at(Level::WARN);
    assert_eq!(warns.len(), 1, "{seen:?}");
    assert!(
        warns[0].1.contains("No space left on device (os error 28)"),
        "{warns:?}"
    );
    assert_eq!(at(Level::INFO).len(), 1, "{seen:?}");
    assert!(at(Level::ERROR).is_empty(), "{seen:?}");
    assert!(
        at(Level::DEBUG).len() >= 3,
        "retries are logged at debug: {seen:?}"
    );
}
