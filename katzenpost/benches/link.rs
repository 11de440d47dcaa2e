//! Link-layer benchmarks: a full XXhfs handshake (both sides, in memory),
//! NewHope-Simple alone, and framed-session throughput of SendPacket-sized
//! commands over loopback TCP, with plain TCP of the same bytes as the
//! same-run reference.
//!
//! Run: `cargo bench -p katzenpost --bench link`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use katzenpost::wire::framing::FrameSender;
use katzenpost::wire::handshake::{AcceptAny, Initiator, LocalIdentity, Responder};
use katzenpost::wire::newhope;
use katzenpost::wire::session::{Session, SessionConfig};
use rand_chacha::rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// SendPacket: 6-byte command header + 51,676-byte Sphinx packet.
const SEND_PACKET_LEN: usize = 6 + 51_676;
/// Commands per measured batch.
const BATCH: u64 = 64;

fn handshake(c: &mut Criterion) {
    let i_id = LocalIdentity::new([1; 32], b"alice".to_vec()).unwrap();
    let r_id = LocalIdentity::new([2; 32], vec![7; 32]).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    c.bench_function("link/handshake_both_sides", |b| {
        b.iter(|| {
            let (init, msg1) = Initiator::start(&i_id, &mut rng);
            let (resp, msg2) = Responder::read_message1(&r_id, &msg1, 0, &mut rng).unwrap();
            let (msg3, _ie) = init.read_message2(&msg2, 0, &AcceptAny).unwrap();
            resp.read_message3(&msg3, &AcceptAny).unwrap()
        })
    });
    let mut g = c.benchmark_group("link/newhope");
    g.bench_function("alice_keygen", |b| {
        b.iter(|| newhope::alice_keygen(&mut rng))
    });
    let (alice, a_msg) = newhope::alice_keygen(&mut rng);
    g.bench_function("bob_respond", |b| {
        b.iter(|| newhope::bob_respond(&mut rng, &a_msg))
    });
    let (b_msg, _) = newhope::bob_respond(&mut rng, &a_msg);
    g.bench_function("alice_finish", |b| b.iter(|| alice.shared_secret(&b_msg)));
    g.finish();
    c.bench_function("link/x25519_reference", |b| {
        b.iter(|| x25519_dalek::x25519([3; 32], x25519_dalek::X25519_BASEPOINT_BYTES))
    });
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (c, s) = (c.unwrap(), s.unwrap().0);
    c.set_nodelay(true).unwrap();
    s.set_nodelay(true).unwrap();
    (c, s)
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("link/throughput_sendpacket");
    g.throughput(Throughput::Bytes(BATCH * SEND_PACKET_LEN as u64));
    g.measurement_time(Duration::from_secs(8));

    // Framing alone, in memory (seal + decode): the CPU cost per command.
    {
        use katzenpost::wire::framing::FrameDecoder;
        use katzenpost::wire::handshake::CipherState;
        let mut tx = FrameSender::new(CipherState::new([9; 32], 0));
        let mut rx = FrameDecoder::new(CipherState::new([9; 32], 0));
        let cmd = vec![0x02u8; SEND_PACKET_LEN];
        let mut wire = Vec::new();
        g.bench_function("framing_in_memory", |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    wire.clear();
                    tx.seal_into(&cmd, &mut wire).unwrap();
                    rx.push(&wire);
                    assert_eq!(rx.decode().unwrap().unwrap().len(), SEND_PACKET_LEN);
                }
            })
        });
    }

    // Framed session.
    let (mut writer, done_rx) = rt.block_on(async {
        let (a, b) = tcp_pair().await;
        let cfg_s = SessionConfig::new(
            LocalIdentity::new([2; 32], vec![7; 32]).unwrap(),
            Arc::new(AcceptAny),
        );
        let cfg_c = SessionConfig::new(
            LocalIdentity::new([1; 32], b"alice".to_vec()).unwrap(),
            Arc::new(AcceptAny),
        );
        let server = tokio::spawn(async move { Session::accept(b, &cfg_s).await.unwrap() });
        let client = Session::initiate(a, &cfg_c).await.unwrap();
        let server = server.await.unwrap();
        let (_, writer, _) = client.into_split();
        let (mut reader, _w, _) = server.into_split();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move {
            let _keep = _w;
            let mut n = 0u64;
            while let Ok(cmd) = reader.recv().await {
                assert_eq!(cmd.len(), SEND_PACKET_LEN);
                n += 1;
                if n == BATCH {
                    n = 0;
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            }
        });
        (writer, rx)
    });
    let cmd = vec![0x02u8; SEND_PACKET_LEN];
    g.bench_function("session", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters * BATCH {
                    writer.send(&cmd).await.unwrap();
                }
            });
            for _ in 0..iters {
                done_rx.recv().unwrap();
            }
            start.elapsed()
        })
    });

    // Reference: the same wire bytes (51,718 per command) over plain TCP.
    let (mut plain_w, plain_done) = rt.block_on(async {
        let (a, mut b) = tcp_pair().await;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let frame_len = FrameSender::sealed_len(SEND_PACKET_LEN);
        tokio::spawn(async move {
            let mut buf = vec![0u8; frame_len];
            let mut n = 0u64;
            while b.read_exact(&mut buf).await.is_ok() {
                n += 1;
                if n == BATCH {
                    n = 0;
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            }
        });
        (a, rx)
    });
    let wire = vec![0u8; FrameSender::sealed_len(SEND_PACKET_LEN)];
    g.bench_function("plain_tcp_reference", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters * BATCH {
                    plain_w.write_all(&wire).await.unwrap();
                }
            });
            for _ in 0..iters {
                plain_done.recv().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, handshake, throughput);
criterion_main!(benches);
