//! Sphinx benchmarks, side by side in one run: the primitives (one X25519
//! variable-base operation, one AEZ pass over a full 51,216-byte payload)
//! and the packet operations (unwrap one hop of a full 51,676-byte packet,
//! create a 5-hop packet, create a 4-hop SURB plus the 5-hop packet that
//! carries it). A summary at the end prints the ratio of unwrap to its floor
//! (2 X25519 + 1 AEZ), and of create to unwrap, all measured in this run
//! (figures measured elsewhere, such as the 2019 Go code's, are no yardstick
//! on another machine: performance-anchors.md keeps them as history).
//!
//! `cargo bench -p katzenpost --bench sphinx`

use std::time::{Duration, Instant};

use criterion::{black_box, BatchSize, Criterion};
use katzenpost::geometry::{FORWARD_PAYLOAD_LENGTH, PAYLOAD_TAG_LENGTH, SURB_LENGTH};
use katzenpost::sphinx::bench_support as prim;
use katzenpost::sphinx::{
    create_packet, create_surb, public_key, unwrap_packet, PathHop, RoutingCommand,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

struct Fixture {
    secrets: Vec<[u8; 32]>,
    forward: Vec<PathHop>,
    reverse: Vec<PathHop>,
    packet: Vec<u8>,
    body: Vec<u8>,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let hop = |cmds: Vec<RoutingCommand>, rng: &mut ChaCha20Rng| {
        let mut sk = [0u8; 32];
        rng.fill_bytes(&mut sk);
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        (
            sk,
            PathHop {
                id,
                public_key: public_key(&sk),
                commands: cmds,
            },
        )
    };
    let mut secrets = Vec::new();
    let mut forward = Vec::new();
    for i in 0..5 {
        let cmds = if i == 4 {
            vec![
                RoutingCommand::Recipient([b'a'; 64]),
                RoutingCommand::NodeDelay(1000),
            ]
        } else {
            vec![RoutingCommand::NodeDelay(1000)]
        };
        let (sk, h) = hop(cmds, &mut rng);
        secrets.push(sk);
        forward.push(h);
    }
    let mut reverse = Vec::new();
    for i in 0..4 {
        let cmds = if i == 3 {
            vec![
                RoutingCommand::Recipient([b'b'; 64]),
                RoutingCommand::SurbReply([9; 16]),
            ]
        } else {
            vec![RoutingCommand::NodeDelay(1000)]
        };
        reverse.push(hop(cmds, &mut rng).1);
    }
    let mut body = vec![0u8; FORWARD_PAYLOAD_LENGTH];
    rng.fill_bytes(&mut body);
    let packet = create_packet(&mut rng, &forward, &body).unwrap();
    Fixture {
        secrets,
        forward,
        reverse,
        packet,
        body,
    }
}

/// Forward packet with a SURB in its body (flags, reserved, SURB, user payload).
fn create_with_surb(rng: &mut ChaCha20Rng, f: &Fixture) -> Vec<u8> {
    let (surb, _keys) = create_surb(rng, &f.reverse).unwrap();
    let mut body = f.body.clone();
    body[0] = 1;
    body[1] = 0;
    body[2..2 + SURB_LENGTH].copy_from_slice(&surb);
    create_packet(rng, &f.forward, &body).unwrap()
}

fn bench(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("sphinx");
    let k = [0x42u8; 32];
    let u = public_key(&[7u8; 32]);
    g.bench_function("x25519_ladder", |b| {
        b.iter(|| prim::x25519_ladder(black_box(&k), black_box(&u)))
    });
    g.bench_function("x25519", |b| {
        b.iter(|| prim::x25519(black_box(&k), black_box(&u)))
    });
    let key = [3u8; 48];
    let nonce = [4u8; 16];
    let mut buf = vec![0u8; PAYLOAD_TAG_LENGTH + FORWARD_PAYLOAD_LENGTH];
    g.bench_function("aez_51216", |b| {
        b.iter(|| prim::aez_encrypt(black_box(&key), &nonce, &mut buf))
    });
    g.bench_function("aez_51216_portable", |b| {
        b.iter(|| prim::aez_encrypt_portable(black_box(&key), &nonce, &mut buf))
    });
    g.bench_function("unwrap_full_packet", |b| {
        b.iter_batched_ref(
            || f.packet.clone(),
            |p| unwrap_packet(&f.secrets[0], p).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    g.bench_function("create_5hop_packet", |b| {
        b.iter(|| create_packet(&mut rng, &f.forward, &f.body).unwrap())
    });
    g.bench_function("create_5hop_packet_with_4hop_surb", |b| {
        b.iter(|| create_with_surb(&mut rng, f))
    });
    g.finish();
}

/// Median time of `op` in microseconds (11 rounds).
fn median_us(iters: u32, mut op: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..11)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                op();
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[5]
}

fn summary(f: &Fixture) {
    let k = [0x42u8; 32];
    let u = public_key(&[7u8; 32]);
    let key = [3u8; 48];
    let nonce = [4u8; 16];
    let mut buf = vec![0u8; PAYLOAD_TAG_LENGTH + FORWARD_PAYLOAD_LENGTH];
    let ladder = median_us(200, || {
        black_box(prim::x25519_ladder(black_box(&k), black_box(&u)));
    });
    let x = median_us(200, || {
        black_box(prim::x25519(black_box(&k), black_box(&u)));
    });
    let aez = median_us(200, || prim::aez_encrypt(black_box(&key), &nonce, &mut buf));
    let aez_portable = median_us(50, || {
        prim::aez_encrypt_portable(black_box(&key), &nonce, &mut buf)
    });
    // Unwrap: restore the packet each time; measure the copy alone and subtract it.
    let mut p = f.packet.clone();
    let with_copy = median_us(100, || {
        p.copy_from_slice(&f.packet);
        black_box(unwrap_packet(&f.secrets[0], &mut p).unwrap());
    });
    let copy = median_us(100, || {
        p.copy_from_slice(black_box(&f.packet));
        black_box(&p);
    });
    let unwrap = with_copy - copy;
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let create = median_us(20, || {
        black_box(create_packet(&mut rng, &f.forward, &f.body).unwrap());
    });
    let create_surb = median_us(20, || {
        black_box(create_with_surb(&mut rng, f));
    });
    let floor = 2.0 * x + aez;
    println!();
    println!("=== Sphinx summary (medians of 11 rounds, this run) ===");
    println!(
        "AEZ fast path (AES-NI) in use: {}",
        katzenpost::sphinx::aez_accelerated()
    );
    println!("X25519 ladder (x25519-dalek)      {ladder:8.1} us");
    println!(
        "X25519 as used (Edwards form)     {x:8.1} us   ladder/used = {:.2}x",
        ladder / x
    );
    println!("AEZ 51,216 B as used              {aez:8.1} us");
    println!(
        "AEZ 51,216 B portable (zears)     {aez_portable:8.1} us   portable/used = {:.2}x",
        aez_portable / aez
    );
    println!("unwrap one hop, 51,676 B          {unwrap:8.1} us   floor 2 X25519 + 1 AEZ = {floor:.1} us, ratio {:.2}x", unwrap / floor);
    println!(
        "create 5-hop packet, full body    {create:8.1} us   create/unwrap = {:.2}x",
        create / unwrap
    );
    println!(
        "create 4-hop SURB + 5-hop packet  {create_surb:8.1} us   /create = {:.2}x",
        create_surb / create
    );
}

fn main() {
    let f = fixture();
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c, &f);
    c.final_summary();
    summary(&f);
}
