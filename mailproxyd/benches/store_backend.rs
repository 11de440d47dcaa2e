//! What the fault-injection backend under the store costs (criterion):
//! durable one-row redb commits on redb's own `FileBackend` and on the
//! store's `FaultBackend` wrapping it with nothing armed (as in production),
//! one after the other in the same run. Throughput is commits per second.
//! `backend_write/*`: one 4 KiB `write` call straight on each backend (no
//! sync), where the wrapper's own cost is not hidden behind fsync.
//!
//! `cargo bench -p mailproxyd --bench store_backend`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailproxyd::store::{FaultBackend, Faults};
use redb::backends::FileBackend;
use redb::{Database, StorageBackend, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn open(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(name))
        .unwrap()
}

fn commits(c: &mut Criterion) {
    let d = tempfile::tempdir().unwrap();
    let plain: Box<dyn Fn() -> Database> = Box::new(|| {
        let b = FileBackend::new(open(d.path(), "plain.redb")).unwrap();
        db(b)
    });
    let faulty: Box<dyn Fn() -> Database> = Box::new(|| {
        let b = FaultBackend::new(open(d.path(), "faulty.redb"), Faults::new()).unwrap();
        db(b)
    });
    let mut g = c.benchmark_group("durable_commit");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for (name, make) in [("file_backend", &plain), ("fault_backend", &faulty)] {
        let db = make();
        let mut k = 0u64;
        let value = [7u8; 200];
        g.bench_function(name, |b| {
            b.iter(|| {
                k += 1;
                let tx = db.begin_write().unwrap();
                tx.open_table(T).unwrap().insert(k, &value[..]).unwrap();
                tx.commit().unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("backend_write");
    g.throughput(Throughput::Bytes(4096))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let page = [3u8; 4096];
    let plain = FileBackend::new(open(d.path(), "plain.raw")).unwrap();
    let faulty = FaultBackend::new(open(d.path(), "faulty.raw"), Faults::new()).unwrap();
    let backends: [(&str, &dyn StorageBackend); 2] =
        [("file_backend", &plain), ("fault_backend", &faulty)];
    for (name, b) in backends {
        let mut i = 0u64;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                i = (i + 1) % 256;
                b.write(i * 4096, &page).unwrap();
            })
        });
    }
    g.finish();
}

fn db(backend: impl StorageBackend) -> Database {
    Database::builder().create_with_backend(backend).unwrap()
}

criterion_group!(benches, commits);
criterion_main!(benches);
