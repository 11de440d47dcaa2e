//! End-to-end block benchmarks (§6): Noise_X block encryption and decryption
//! (throughput in MB/s of message bytes, 50,522 per block), fragmentation and
//! reassembly of a 5 MiB message. References measured in the same run:
//! bare ChaCha20-Poly1305 over the same 50,546-byte plaintext (the symmetric
//! floor of one block) and a 5 MiB memcpy.
//!
//! `cargo bench -p katzenpost --bench block`

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use katzenpost::block::{assemble, decrypt_block, encrypt_block, encrypt_message, fragment, Block};
use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};
use x25519_dalek::{PublicKey, StaticSecret};

const FIVE_MIB: usize = 5 << 20;

fn keys() -> ([u8; 32], [u8; 32], [u8; 32]) {
    let s = StaticSecret::from([1u8; 32]);
    let r = StaticSecret::from([2u8; 32]);
    (s.to_bytes(), r.to_bytes(), PublicKey::from(&r).to_bytes())
}

fn full_block() -> Block {
    Block {
        message_id: [7; 16],
        total_blocks: 1,
        block_id: 0,
        payload: (0..BLOCK_PAYLOAD_LENGTH).map(|i| i as u8).collect(),
    }
}

fn crypto(c: &mut Criterion) {
    let (ssk, rsk, rpk) = keys();
    let block = full_block();
    let ct = encrypt_block(&ssk, &rpk, &block).unwrap();

    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::BytesDecimal(BLOCK_PAYLOAD_LENGTH as u64));
    g.bench_function("encrypt", |b| {
        b.iter(|| encrypt_block(black_box(&ssk), &rpk, black_box(&block)).unwrap())
    });
    g.bench_function("decrypt", |b| {
        b.iter(|| decrypt_block(black_box(&rsk), black_box(&ct)).unwrap())
    });

    // Reference: one bare AEAD pass over a block plaintext.
    let aead = ChaCha20Poly1305::new(&[9u8; 32].into());
    let mut buf = vec![0u8; BLOCK_LENGTH];
    g.bench_function("reference_chacha20poly1305_seal", |b| {
        b.iter(|| {
            let tag = aead
                .encrypt_in_place_detached(&[0u8; 12].into(), &[], black_box(&mut buf))
                .unwrap();
            black_box(tag)
        })
    });
    // Reference: the X25519 work of one Noise_X message (3 variable-base DH + 1 base-point mult).
    g.throughput(Throughput::Elements(1));
    g.bench_function("reference_x25519_x4", |b| {
        b.iter(|| {
            let e = StaticSecret::from(black_box([3u8; 32]));
            let e_pub = PublicKey::from(&e);
            let a = e.diffie_hellman(&PublicKey::from(rpk));
            let s = StaticSecret::from(ssk);
            let b2 = s.diffie_hellman(&PublicKey::from(rpk));
            let c2 = s.diffie_hellman(&e_pub);
            black_box((a, b2, c2))
        })
    });
    g.finish();
}

fn fragmentation(c: &mut Criterion) {
    let msg: Vec<u8> = (0..FIVE_MIB).map(|i| (i * 31) as u8).collect();
    let blocks = fragment([1; 16], &msg).unwrap();

    let mut g = c.benchmark_group("message_5MiB");
    g.throughput(Throughput::BytesDecimal(FIVE_MIB as u64));
    g.bench_function("fragment", |b| {
        b.iter(|| fragment([1; 16], black_box(&msg)).unwrap())
    });
    g.bench_function("fragment_and_encode", |b| {
        let mut out = Box::new([0u8; BLOCK_LENGTH]);
        b.iter(|| {
            for blk in fragment([1; 16], black_box(&msg)).unwrap() {
                blk.encode_into(&mut out).unwrap();
                black_box(&out);
            }
        })
    });
    g.bench_function("assemble", |b| {
        b.iter(|| assemble(black_box(&blocks)).unwrap())
    });
    g.bench_function("encrypt_message", |b| {
        let (ssk, _, rpk) = keys();
        b.iter(|| encrypt_message(&ssk, &rpk, [1; 16], black_box(&msg)).unwrap())
    });
    g.bench_function("reference_memcpy", |b| b.iter(|| black_box(&msg).clone()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = crypto, fragmentation
}
criterion_main!(benches);
