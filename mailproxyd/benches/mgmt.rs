//! What the management socket costs the daemon (criterion):
//!
//! - `log/*`: one `debug!` and one `info!` with the log file at NOTICE, under
//!   the fmt layer alone (the reference, as before the log bus) and with the
//!   log bus installed: nobody subscribed, a subscriber at info, one at debug.
//! - `control/*`: `QUEUE` and `STATUS` over a store with 1000 queued entries
//!   (decrypting every entry), next to the bare store scan as the reference.
//!
//! `cargo bench -p mailproxyd --bench mgmt`

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mailproxy_proto::Level;
use mailproxyd::control::{Control, ControlAccount, DaemonControl};
use mailproxyd::events::EventBus;
use mailproxyd::logging::LogBus;
use mailproxyd::recipients::Recipients;
use mailproxyd::store::{KeySource, NewQueueEntry, Store};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

fn log_lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("log");
    let fmt = || {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(LevelFilter::INFO)
    };
    let emit = || {
        tracing::debug!(id = 7u64, "a debug line");
        tracing::info!(id = 7u64, peer = "provider1", "an info line");
    };
    {
        let reference = tracing_subscriber::registry().with(fmt());
        tracing::subscriber::with_default(reference, || {
            g.bench_function("fmt_only", |b| b.iter(emit));
        });
    }
    let bus = LogBus::new(1 << 16);
    let subscriber = tracing_subscriber::registry().with(fmt()).with(bus.layer());
    tracing::subscriber::with_default(subscriber, || {
        g.bench_function("bus_unsubscribed", |b| b.iter(emit));
        for level in [Level::Info, Level::Debug] {
            let mut sub = bus.subscribe(level);
            g.bench_function(format!("bus_subscribed_{level}"), |b| {
                b.iter(|| {
                    emit();
                    // Drain so the channel never lags.
                    while let Ok(line) = sub.try_recv() {
                        black_box(line);
                    }
                })
            });
        }
    });
    g.finish();
}

fn control(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    mailproxyd::keys::ensure_private_dir(&dir).unwrap();
    let store = Store::open(&dir, &KeySource::KeyFile).unwrap();
    let msg = vec![b'x'; 2000];
    for i in 0..1000u64 {
        store
            .enqueue(
                "alice@p",
                &msg,
                &[NewQueueEntry {
                    recipient: format!("user{i}@q"),
                    created: 1,
                    bounce_at: u64::MAX / 2,
                    unreliable: false,
                }],
            )
            .unwrap();
    }
    let rdir = tmp.path().join("r");
    mailproxyd::keys::ensure_private_dir(&rdir).unwrap();
    let recipients = Recipients::new(rdir, Default::default(), false);
    let control: Arc<dyn Control> = Arc::new(DaemonControl::new(
        vec![ControlAccount {
            id: "alice@p".into(),
            store: store.clone(),
            engine: None,
        }],
        recipients,
        EventBus::default(),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("control");
    g.sample_size(20);
    g.bench_function("store_scan_1000_reference", |b| {
        b.iter(|| {
            let mut n = 0;
            for id in store.queue_ids().unwrap() {
                n += store.queue_get(id).unwrap().map_or(0, |e| e.message.len);
            }
            black_box(n)
        })
    });
    g.bench_function("queue_1000", |b| {
        b.iter(|| black_box(rt.block_on(control.queue()).unwrap().len()))
    });
    g.bench_function("status_1000", |b| {
        b.iter(|| black_box(rt.block_on(control.status()).len()))
    });
    g.finish();
}

criterion_group!(benches, log_lines, control);
criterion_main!(benches);
