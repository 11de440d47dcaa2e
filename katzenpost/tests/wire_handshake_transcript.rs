//! Replays `wire_handshake_transcript.json` (recorded from core v0.0.7 over
//! net.Pipe) on both sides: with the documented SHA-256 counter RNG our
//! initiator and responder must produce the recorded bytes exactly, accept
//! the peer's recorded messages, and encrypt/decrypt the frames that follow.

use katzenpost::wire::framing::{FrameDecoder, FrameSender};
use katzenpost::wire::handshake::{
    x25519_public, AuthError, ExpectPeer, Initiator, LocalIdentity, PeerCredentials, Responder,
    MSG1_LEN, MSG2_LEN, MSG3_LEN,
};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/wire_handshake_transcript.json"
);

/// block_i = SHA-256(seed ‖ u64le(i)), concatenated.
struct CounterRng {
    seed: Vec<u8>,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl CounterRng {
    fn new(seed: &str) -> Self {
        CounterRng {
            seed: seed.as_bytes().to_vec(),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for CounterRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(&self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *d = self.block[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for CounterRng {}

struct Transcript {
    initiator_seed: String,
    responder_seed: String,
    initiator_private: [u8; 32],
    responder_private: [u8; 32],
    initiator_ad: Vec<u8>,
    responder_ad: Vec<u8>,
    records: Vec<(String, Vec<u8>)>,
}

fn load() -> Transcript {
    let text = std::fs::read_to_string(VECTOR)
        .unwrap_or_else(|e| panic!("test vector {VECTOR} is missing or unreadable: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("transcript JSON");
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("field {k}"))
            .to_string()
    };
    let h = |k: &str| hex::decode(s(k)).unwrap_or_else(|_| panic!("hex field {k}"));
    let key = |k: &str| -> [u8; 32] { h(k).try_into().expect("32-byte key") };
    let records = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["dir"].as_str().expect("dir").to_string(),
                hex::decode(r["hex"].as_str().expect("hex")).expect("record hex"),
            )
        })
        .collect();
    Transcript {
        initiator_seed: s("initiator_rng_seed"),
        responder_seed: s("responder_rng_seed"),
        initiator_private: key("initiator_static_private"),
        responder_private: key("responder_static_private"),
        initiator_ad: h("initiator_ad"),
        responder_ad: h("responder_ad"),
        records,
    }
}

fn noop() -> Vec<u8> {
    vec![0, 0, 0, 0, 0, 0]
}

fn get_consensus(epoch: u64) -> Vec<u8> {
    let mut c = vec![0x12, 0, 0, 0, 0, 8];
    c.extend_from_slice(&epoch.to_be_bytes());
    c
}

fn consensus(error: u8, doc: &[u8]) -> Vec<u8> {
    let mut c = vec![0x13, 0];
    c.extend_from_slice(&((1 + doc.len()) as u32).to_be_bytes());
    c.push(error);
    c.extend_from_slice(doc);
    c
}

fn decode_one(dec: &mut FrameDecoder, wire: &[u8]) -> Vec<u8> {
    dec.push(wire);
    let cmd = dec
        .decode()
        .expect("frame decrypts")
        .expect("a whole frame");
    assert!(
        dec.decode().expect("no error").is_none(),
        "exactly one frame"
    );
    cmd
}

#[test]
fn records_have_the_documented_shape() {
    let t = load();
    let dirs: Vec<&str> = t.records.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(dirs, ["i2r", "r2i", "i2r", "r2i", "i2r", "r2i"]);
    let lens: Vec<usize> = t.records.iter().map(|(_, b)| b.len()).collect();
    assert_eq!(lens, [MSG1_LEN, MSG2_LEN, MSG3_LEN, 42, 50, 52]);
}

/// Initiator side, plus the responder time it learns (needed by the responder replay).
fn replay_initiator(t: &Transcript) -> u32 {
    let identity = LocalIdentity::new(t.initiator_private, t.initiator_ad.clone()).unwrap();
    let mut rng = CounterRng::new(&t.initiator_seed);
    let (init, msg1) = Initiator::start(&identity, &mut rng);
    assert_eq!(
        hex::encode(&msg1),
        hex::encode(&t.records[0].1),
        "msg1 differs"
    );

    let responder_identity: [u8; 32] = t.responder_ad.clone().try_into().unwrap();
    let expect = ExpectPeer::new(responder_identity, x25519_public(&t.responder_private));
    let now = 1_800_000_000;
    let (msg3, est) = init
        .read_message2(&t.records[1].1, now, &expect)
        .expect("accept recorded msg2");
    assert_eq!(
        hex::encode(&msg3),
        hex::encode(&t.records[2].1),
        "msg3 differs"
    );
    assert_eq!(est.peer.additional_data, t.responder_ad);
    assert_eq!(est.clock_skew, Some(now as i64 - est.peer_unix_time as i64));
    // The recording was made in 2025/2026: a plausible wall-clock second.
    assert!(
        est.peer_unix_time > 1_700_000_000,
        "responder time {}",
        est.peer_unix_time
    );

    let mut dec = FrameDecoder::new(est.recv);
    let mut snd = FrameSender::new(est.send);
    assert_eq!(decode_one(&mut dec, &t.records[3].1), noop());
    assert_eq!(
        hex::encode(snd.seal(&get_consensus(27708)).unwrap()),
        hex::encode(&t.records[4].1)
    );
    assert_eq!(
        decode_one(&mut dec, &t.records[5].1),
        consensus(0, b"TANSTAAFL")
    );
    est.peer_unix_time
}

#[test]
fn initiator_reproduces_transcript() {
    let t = load();
    replay_initiator(&t);
}

#[test]
fn responder_reproduces_transcript() {
    let t = load();
    let unix_time = replay_initiator(&t);
    let identity = LocalIdentity::new(t.responder_private, t.responder_ad.clone()).unwrap();
    let mut rng = CounterRng::new(&t.responder_seed);
    let (resp, msg2) =
        Responder::read_message1(&identity, &t.records[0].1, unix_time as u64, &mut rng)
            .expect("accept recorded msg1");
    assert_eq!(
        hex::encode(&msg2),
        hex::encode(&t.records[1].1),
        "msg2 differs"
    );

    let initiator_static = x25519_public(&t.initiator_private);
    let want_ad = t.initiator_ad.clone();
    let check = move |p: &PeerCredentials| {
        if p.additional_data != want_ad {
            return Err(AuthError::UnknownPeer);
        }
        if p.static_key != initiator_static {
            return Err(AuthError::WrongLinkKey);
        }
        Ok(())
    };
    let est = resp
        .read_message3(&t.records[2].1, &check)
        .expect("accept recorded msg3");
    assert_eq!(est.peer.additional_data, b"alice");
    assert_eq!(est.peer_unix_time, 0);

    let mut snd = FrameSender::new(est.send);
    let mut dec = FrameDecoder::new(est.recv);
    assert_eq!(
        hex::encode(snd.seal(&noop()).unwrap()),
        hex::encode(&t.records[3].1)
    );
    assert_eq!(decode_one(&mut dec, &t.records[4].1), get_consensus(27708));
    assert_eq!(
        hex::encode(snd.seal(&consensus(0, b"TANSTAAFL")).unwrap()),
        hex::encode(&t.records[5].1)
    );
}

#[test]
fn wrong_keys_are_rejected_naming_the_check() {
    let t = load();
    let identity = LocalIdentity::new(t.initiator_private, t.initiator_ad.clone()).unwrap();
    let responder_identity: [u8; 32] = t.responder_ad.clone().try_into().unwrap();
    let real_link = x25519_public(&t.responder_private);

    let cases = [
        (
            ExpectPeer::new([0xaa; 32], real_link),
            AuthError::WrongIdentityKey,
        ),
        (
            ExpectPeer::new(responder_identity, [0xbb; 32]),
            AuthError::WrongLinkKey,
        ),
        (
            ExpectPeer::new(responder_identity, real_link).with_pin(Some([0xcc; 32])),
            AuthError::PinMismatch,
        ),
    ];
    for (expect, want) in cases {
        let mut rng = CounterRng::new(&t.initiator_seed);
        let (init, _) = Initiator::start(&identity, &mut rng);
        let err = init
            .read_message2(&t.records[1].1, 0, &expect)
            .expect_err("must reject");
        assert_eq!(
            err.to_string(),
            format!("peer authentication failed: {want}")
        );
    }
}
