//! How long a full redraw and a burst of events take, against a reference in
//! the same run: ratatui drawing one bordered paragraph of the same size
//! (the floor any dashboard frame pays: buffer fill and diff).
//!
//! `cargo bench -p mailproxy-tui --bench render`

use criterion::{criterion_group, criterion_main, Criterion};
use mailproxy_proto::{
    AccountStatus, ConnState, Event, EventKind, InboxItem, Level, LogLine, QueueItem, QueueState,
    StreamLine,
};
use mailproxy_tui::app::{AccountRow, Connection, QueueRow, State, LOG_CAPACITY};
use mailproxy_tui::event::Msg;
use mailproxy_tui::update::update;
use ratatui::backend::TestBackend;
use ratatui::widgets::{Block, Paragraph};
use ratatui::Terminal;
use std::hint::black_box;

const NOW_MS: u64 = 1_790_000_000_000;

/// A busy dashboard: 3 accounts, 200 recipients, 200 queued messages,
/// 100 received, a full log.
fn busy() -> State {
    let mut s = State::new(NOW_MS, Level::Debug);
    s.connection = Connection::Connected {
        version: "mailproxyd 0.1.0 protocol 2".into(),
    };
    s.accounts = (0..3)
        .map(|i| AccountRow {
            account: format!("user{i}@provider{i}"),
            status: Some(AccountStatus {
                account: format!("user{i}@provider{i}"),
                connection: ConnState::Up,
                epoch: Some(100),
                document_age: Some(30),
                queued: 60,
                in_flight: 6,
                ..Default::default()
            }),
            seen_ms: NOW_MS,
        })
        .collect();
    s.recipients = (0..200)
        .map(|i| (format!("friend{i:03}@provider{}", i % 7), [i as u8; 32]))
        .collect();
    s.queue = (0..200)
        .map(|i| QueueRow {
            item: QueueItem {
                account: "user0@provider0".into(),
                id: i,
                recipient: format!("friend{i:03}@provider1"),
                size: 50_000 + i * 1000,
                blocks_acked: (i % 10) as u32,
                blocks_total: 10,
                age: i * 7,
                state: QueueState::Sending,
                retransmit_in: Some(30),
                bounce_in: 400_000,
                unreliable: false,
            },
            seen_ms: NOW_MS,
            deadlines_known: true,
        })
        .collect();
    s.inbox = (0..100)
        .map(|i| InboxItem {
            account: "user0@provider0".into(),
            id: i,
            size: 3_000,
            arrived: NOW_MS / 1000 - i * 60,
            sender: Some("q80U2lS+x1PnkX3LhC7DTkbhtEXcGRvN0pHvOS8E5Gk=".into()),
        })
        .collect();
    for i in 0..LOG_CAPACITY as u64 {
        update(
            &mut s,
            Msg::Stream(StreamLine::Log(LogLine {
                time_ms: NOW_MS + i,
                level: if i % 3 == 0 {
                    Level::Debug
                } else {
                    Level::Info
                },
                target: "mailproxyd::engine::arq".into(),
                message: format!("retransmitting block {i} of message {} after 30 s", i % 200),
            })),
        );
    }
    s
}

fn benches(c: &mut Criterion) {
    let state = busy();
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
    let mut group = c.benchmark_group("frame_140x40");
    group.bench_function("reference_bordered_paragraph", |b| {
        let text: String = (0..38)
            .map(|i| format!("{i:>3} retransmitting block of message after 30 s\n"))
            .collect();
        b.iter(|| {
            terminal
                .draw(|f| {
                    f.render_widget(
                        Paragraph::new(black_box(text.as_str())).block(Block::bordered()),
                        f.area(),
                    )
                })
                .unwrap();
        })
    });
    group.bench_function("dashboard_busy", |b| {
        b.iter(|| {
            terminal
                .draw(|f| mailproxy_tui::view::draw(f, black_box(&state)))
                .unwrap();
        })
    });
    group.finish();

    c.bench_function("update_1000_progress_events", |b| {
        b.iter_batched(
            busy,
            |mut s| {
                for i in 0..1000u64 {
                    update(
                        &mut s,
                        Msg::Stream(StreamLine::Event(Event {
                            time_ms: NOW_MS + i,
                            account: "user0@provider0".into(),
                            kind: EventKind::Progress {
                                id: i % 200,
                                acked: (i % 10) as u32,
                                blocks: 10,
                            },
                        })),
                    );
                }
                s
            },
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group!(render, benches);
criterion_main!(render);
