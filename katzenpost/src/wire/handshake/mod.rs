//! The link handshake `Noise_XXhfs_25519+NewHopeSimple_ChaChaPoly_BLAKE2b`
//! with the old HFS draft tokens (§4.1–§4.5), as a sans-I/O state machine.
//!
//! ```text
//! -> e, f
//! <- e, f, ee, ff, s, es
//! -> s, se
//! ```
//!
//! The initiator calls [`Initiator::start`] (message 1, prologue byte
//! included), then [`Initiator::read_message2`] (which authenticates the
//! responder and yields message 3 and the transport keys). The responder calls
//! [`Responder::read_message1`] (yielding message 2), then
//! [`Responder::read_message3`]. Times are passed in so the state machine is
//! deterministic.

pub mod auth;
pub mod symmetric;

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::newhope::{self, ALICE_MESSAGE_LEN, BOB_MESSAGE_LEN};
pub use auth::{
    ed25519_public_to_x25519, ed25519_secret_to_x25519, x25519_public, AcceptAny, AuthError,
    AuthenticateMessage, AuthorityPolicy, ExpectPeer, KeyConversionError, KnownPeers,
    PeerAuthenticator, PeerCredentials, AUTH_MESSAGE_LEN, MAX_ADDITIONAL_DATA_LEN,
};
pub use symmetric::{CipherError, CipherState, SymmetricState, HASH_LEN, TAG_LEN};

/// The Noise protocol name (hashed into the state, so every byte matters).
pub const PROTOCOL_NAME: &[u8] = b"Noise_XXhfs_25519+NewHopeSimple_ChaChaPoly_BLAKE2b";
/// The protocol version byte: sent in clear first, and the Noise prologue.
pub const PROLOGUE: u8 = 0x00;
/// X25519 public key length.
pub const DH_LEN: usize = 32;
/// Message 1 with its leading prologue byte: `00 ‖ e ‖ Alice`.
pub const MSG1_LEN: usize = 1 + DH_LEN + ALICE_MESSAGE_LEN;
/// Message 2: `e ‖ Bob ‖ enc s ‖ enc AuthenticateMessage`.
pub const MSG2_LEN: usize =
    DH_LEN + BOB_MESSAGE_LEN + (DH_LEN + TAG_LEN) + (AUTH_MESSAGE_LEN + TAG_LEN);
/// Message 3: `enc s ‖ enc AuthenticateMessage`.
pub const MSG3_LEN: usize = (DH_LEN + TAG_LEN) + (AUTH_MESSAGE_LEN + TAG_LEN);

const _: () = assert!(PROTOCOL_NAME.len() == 50);
const _: () = assert!(MSG1_LEN == 1857);
const _: () = assert!(MSG2_LEN == 2532);
const _: () = assert!(MSG3_LEN == 324);

/// Which handshake message an error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `-> e, f`
    One,
    /// `<- e, f, ee, ff, s, es`
    Two,
    /// `-> s, se`
    Three,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::One => "message 1",
            Message::Two => "message 2",
            Message::Three => "message 3",
        })
    }
}

/// A handshake failure. The session must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The first byte was not the 2019 prologue `0x00`.
    #[error("unsupported protocol version (prologue byte {0:#04x})")]
    WrongPrologue(u8),
    /// A handshake message had the wrong length.
    #[error("{message} has {got} bytes, expected {expected}")]
    WrongLength {
        /// The message.
        message: Message,
        /// The fixed size.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// An encrypted part of a handshake message failed to decrypt (tampered,
    /// or the peers derived different keys).
    #[error("{message}: decryption failed ({source})")]
    Decrypt {
        /// The message.
        message: Message,
        /// The AEAD error.
        source: CipherError,
    },
    /// The peer's public key gave an all-zero Diffie-Hellman output.
    #[error("{0}: peer sent a low-order X25519 key")]
    LowOrderKey(Message),
    /// The configured additional data exceeds 255 bytes.
    #[error("additional data is {0} bytes, at most 255 allowed")]
    AdditionalDataTooLong(usize),
    /// The authenticator rejected the peer.
    #[error("peer authentication failed: {0}")]
    Auth(#[from] AuthError),
}

/// This side's long-term handshake credentials: the Noise static key and the
/// additional data sent in the AuthenticateMessage.
#[derive(Clone)]
pub struct LocalIdentity {
    static_private: Zeroizing<[u8; 32]>,
    static_public: [u8; 32],
    additional_data: Vec<u8>,
}

impl std::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("ad_len", &self.additional_data.len())
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// From an X25519 private key and additional data (≤ 255 bytes).
    pub fn new(static_private: [u8; 32], additional_data: Vec<u8>) -> Result<Self, HandshakeError> {
        if additional_data.len() > MAX_ADDITIONAL_DATA_LEN {
            return Err(HandshakeError::AdditionalDataTooLong(additional_data.len()));
        }
        let static_private = Zeroizing::new(static_private);
        let static_public = x25519_public(&static_private);
        Ok(LocalIdentity {
            static_private,
            static_public,
            additional_data,
        })
    }

    /// A fresh random static key with the given additional data (the client →
    /// authority case uses empty additional data).
    pub fn ephemeral<R: RngCore + CryptoRng>(
        rng: &mut R,
        additional_data: Vec<u8>,
    ) -> Result<Self, HandshakeError> {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        let id = Self::new(k, additional_data);
        zeroize::Zeroize::zeroize(&mut k);
        id
    }

    /// A node's identity for links where it authenticates with its Ed25519
    /// identity key (node → authority): additional data = the Ed25519 public
    /// key, Noise static key = the seed converted to X25519.
    pub fn from_ed25519_seed(seed: &[u8; 32]) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        Self::new(*ed25519_secret_to_x25519(seed), public.to_vec())
            .expect("32-byte additional data")
    }

    /// The static public key.
    pub fn static_public(&self) -> &[u8; 32] {
        &self.static_public
    }

    /// The additional data.
    pub fn additional_data(&self) -> &[u8] {
        &self.additional_data
    }
}

/// The result of a completed handshake.
#[derive(Debug)]
pub struct Established {
    /// Cipher state for the messages this side sends.
    pub send: CipherState,
    /// Cipher state for the messages this side receives.
    pub recv: CipherState,
    /// The authenticated peer.
    pub peer: PeerCredentials,
    /// The Unix time in the peer's AuthenticateMessage (0 from initiators).
    pub peer_unix_time: u32,
    /// Initiator only: local time at message 2 minus the responder's time, in seconds.
    pub clock_skew: Option<i64>,
    /// The final handshake hash (channel binding).
    pub handshake_hash: [u8; HASH_LEN],
}

fn random_key<R: RngCore + CryptoRng>(rng: &mut R) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut k[..]);
    k
}

fn dh(
    private: &[u8; 32],
    public: &[u8; 32],
    msg: Message,
) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    let out = Zeroizing::new(x25519_dalek::x25519(*private, *public));
    if out.iter().all(|&b| b == 0) {
        return Err(HandshakeError::LowOrderKey(msg));
    }
    Ok(out)
}

fn initial_state() -> SymmetricState {
    let mut ss = SymmetricState::new(PROTOCOL_NAME);
    ss.mix_hash(&[PROLOGUE]);
    ss
}

fn check_len(msg: Message, data: &[u8], expected: usize) -> Result<(), HandshakeError> {
    if data.len() != expected {
        return Err(HandshakeError::WrongLength {
            message: msg,
            expected,
            got: data.len(),
        });
    }
    Ok(())
}

fn decrypt(
    ss: &mut SymmetricState,
    msg: Message,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
    ss.decrypt_and_hash(data)
        .map_err(|source| HandshakeError::Decrypt {
            message: msg,
            source,
        })
}

fn encrypt(ss: &mut SymmetricState, plaintext: &[u8], out: &mut Vec<u8>) {
    // Fresh keys with nonce 0 or 1: encryption cannot run out of nonces.
    ss.encrypt_and_hash(plaintext, out)
        .expect("handshake nonces never exhaust");
}

/// The initiator after sending message 1.
pub struct Initiator {
    ss: SymmetricState,
    identity: LocalIdentity,
    e_private: Zeroizing<[u8; 32]>,
    alice: newhope::AlicePrivateKey,
}

impl Initiator {
    /// Builds message 1 (prologue byte included, 1,857 bytes). Draws 32 bytes
    /// for `e`, then NewHope-Simple Alice's randomness (§4.3 order).
    pub fn start<R: RngCore + CryptoRng>(identity: &LocalIdentity, rng: &mut R) -> (Self, Vec<u8>) {
        let mut ss = initial_state();
        let mut out = Vec::with_capacity(MSG1_LEN);
        out.push(PROLOGUE);
        // e
        let e_private = random_key(rng);
        let e_public = x25519_public(&e_private);
        out.extend_from_slice(&e_public);
        ss.mix_hash(&e_public);
        // f (no key yet: in clear)
        let (alice, alice_msg) = newhope::alice_keygen(rng);
        encrypt(&mut ss, &alice_msg, &mut out);
        // empty payload
        encrypt(&mut ss, &[], &mut out);
        debug_assert_eq!(out.len(), MSG1_LEN);
        let init = Initiator {
            ss,
            identity: identity.clone(),
            e_private,
            alice,
        };
        (init, out)
    }

    /// Reads message 2, authenticates the responder with `auth`, and returns
    /// message 3 and the transport state. `now_unix` is the local time at
    /// which message 2 arrived (for the clock skew).
    pub fn read_message2(
        mut self,
        msg2: &[u8],
        now_unix: u64,
        auth: &dyn PeerAuthenticator,
    ) -> Result<(Vec<u8>, Established), HandshakeError> {
        const M: Message = Message::Two;
        check_len(M, msg2, MSG2_LEN)?;
        let ss = &mut self.ss;
        let (re, rest) = msg2.split_at(DH_LEN);
        let re: [u8; 32] = re.try_into().expect("DH_LEN");
        let (bob, rest) = rest.split_at(BOB_MESSAGE_LEN);
        let (enc_s, enc_payload) = rest.split_at(DH_LEN + TAG_LEN);
        // e
        ss.mix_hash(&re);
        // f
        let bob = decrypt(ss, M, bob)?;
        let bob: &[u8; BOB_MESSAGE_LEN] = bob.as_slice().try_into().expect("BOB_MESSAGE_LEN");
        // ee
        ss.mix_key(&dh(&self.e_private, &re, M)?[..]);
        // ff
        ss.mix_key(&self.alice.shared_secret(bob)[..]);
        // s
        let rs: [u8; 32] = decrypt(ss, M, enc_s)?
            .as_slice()
            .try_into()
            .expect("DH_LEN");
        // es
        ss.mix_key(&dh(&self.e_private, &rs, M)?[..]);
        // payload
        let payload = decrypt(ss, M, enc_payload)?;
        let am = AuthenticateMessage::decode(&payload).expect("payload length is fixed");
        let clock_skew = now_unix as i64 - am.unix_time as i64;

        let peer = PeerCredentials {
            additional_data: am.additional_data,
            static_key: rs,
        };
        auth.authenticate(&peer)?;

        // Message 3: s, se, payload.
        let mut out = Vec::with_capacity(MSG3_LEN);
        encrypt(ss, &self.identity.static_public, &mut out);
        ss.mix_key(&dh(&self.identity.static_private, &re, M)?[..]);
        let mine = AuthenticateMessage {
            additional_data: self.identity.additional_data.clone(),
            unix_time: 0,
        };
        encrypt(ss, &mine.encode(), &mut out);
        debug_assert_eq!(out.len(), MSG3_LEN);

        let (c1, c2) = ss.split();
        let est = Established {
            send: c1,
            recv: c2,
            peer,
            peer_unix_time: am.unix_time,
            clock_skew: Some(clock_skew),
            handshake_hash: ss.handshake_hash(),
        };
        Ok((out, est))
    }
}

/// The responder after sending message 2.
pub struct Responder {
    ss: SymmetricState,
    e_private: Zeroizing<[u8; 32]>,
}

impl Responder {
    /// Checks the first byte of a connection (the version byte).
    pub fn check_prologue(byte: u8) -> Result<(), HandshakeError> {
        if byte != PROLOGUE {
            return Err(HandshakeError::WrongPrologue(byte));
        }
        Ok(())
    }

    /// Reads message 1 (1,857 bytes, prologue byte included) and builds
    /// message 2 carrying `now_unix`. Draws 32 bytes for `e`, then
    /// NewHope-Simple Bob's randomness (§4.3 order).
    pub fn read_message1<R: RngCore + CryptoRng>(
        identity: &LocalIdentity,
        msg1: &[u8],
        now_unix: u64,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        const M: Message = Message::One;
        if let Some(&b) = msg1.first() {
            Self::check_prologue(b)?;
        }
        check_len(M, msg1, MSG1_LEN)?;
        let mut ss = initial_state();
        let (re, alice) = msg1[1..].split_at(DH_LEN);
        let re: [u8; 32] = re.try_into().expect("DH_LEN");
        ss.mix_hash(&re);
        let alice = decrypt(&mut ss, M, alice)?;
        let alice: &[u8; ALICE_MESSAGE_LEN] =
            alice.as_slice().try_into().expect("ALICE_MESSAGE_LEN");
        decrypt(&mut ss, M, &[])?;

        const W: Message = Message::Two;
        let mut out = Vec::with_capacity(MSG2_LEN);
        // e
        let e_private = random_key(rng);
        let e_public = x25519_public(&e_private);
        out.extend_from_slice(&e_public);
        ss.mix_hash(&e_public);
        // f
        let (bob_msg, nh_secret) = newhope::bob_respond(rng, alice);
        encrypt(&mut ss, &bob_msg, &mut out);
        // ee
        ss.mix_key(&dh(&e_private, &re, M)?[..]);
        // ff
        ss.mix_key(&nh_secret[..]);
        // s
        encrypt(&mut ss, &identity.static_public, &mut out);
        // es
        ss.mix_key(&dh(&identity.static_private, &re, W)?[..]);
        // payload
        let mine = AuthenticateMessage {
            additional_data: identity.additional_data.clone(),
            unix_time: now_unix as u32,
        };
        encrypt(&mut ss, &mine.encode(), &mut out);
        debug_assert_eq!(out.len(), MSG2_LEN);
        Ok((Responder { ss, e_private }, out))
    }

    /// Reads message 3 and authenticates the initiator with `auth`.
    pub fn read_message3(
        mut self,
        msg3: &[u8],
        auth: &dyn PeerAuthenticator,
    ) -> Result<Established, HandshakeError> {
        const M: Message = Message::Three;
        check_len(M, msg3, MSG3_LEN)?;
        let ss = &mut self.ss;
        let (enc_s, enc_payload) = msg3.split_at(DH_LEN + TAG_LEN);
        let rs: [u8; 32] = decrypt(ss, M, enc_s)?
            .as_slice()
            .try_into()
            .expect("DH_LEN");
        ss.mix_key(&dh(&self.e_private, &rs, M)?[..]);
        let payload = decrypt(ss, M, enc_payload)?;
        let am = AuthenticateMessage::decode(&payload).expect("payload length is fixed");
        let peer = PeerCredentials {
            additional_data: am.additional_data,
            static_key: rs,
        };
        auth.authenticate(&peer)?;
        let (c1, c2) = ss.split();
        Ok(Established {
            send: c2,
            recv: c1,
            peer,
            peer_unix_time: am.unix_time,
            clock_skew: None,
            handshake_hash: ss.handshake_hash(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn identities() -> (LocalIdentity, LocalIdentity) {
        (
            LocalIdentity::new([1; 32], b"alice".to_vec()).unwrap(),
            LocalIdentity::new([2; 32], vec![7; 32]).unwrap(),
        )
    }

    fn run(
        msg2_tamper: impl Fn(&mut Vec<u8>),
        msg3_tamper: impl Fn(&mut Vec<u8>),
    ) -> Result<(Established, Established), HandshakeError> {
        let (i_id, r_id) = identities();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let (init, msg1) = Initiator::start(&i_id, &mut rng);
        let (resp, mut msg2) = Responder::read_message1(&r_id, &msg1, 1000, &mut rng)?;
        msg2_tamper(&mut msg2);
        let (mut msg3, ie) = init.read_message2(&msg2, 1003, &AcceptAny)?;
        msg3_tamper(&mut msg3);
        let re = resp.read_message3(&msg3, &AcceptAny)?;
        Ok((ie, re))
    }

    #[test]
    fn handshake_agrees() {
        let (mut ie, mut re) = run(|_| {}, |_| {}).unwrap();
        assert_eq!(ie.handshake_hash, re.handshake_hash);
        assert_eq!(ie.clock_skew, Some(3));
        assert_eq!(ie.peer.additional_data, vec![7; 32]);
        assert_eq!(re.peer.additional_data, b"alice");
        assert_eq!(re.peer.static_key, x25519_public(&[1; 32]));
        assert_eq!(ie.peer.static_key, x25519_public(&[2; 32]));
        let ct = ie.send.encrypt(&[], b"hi").unwrap();
        assert_eq!(re.recv.decrypt(&[], &ct).unwrap(), b"hi");
        let ct = re.send.encrypt(&[], b"ho").unwrap();
        assert_eq!(ie.recv.decrypt(&[], &ct).unwrap(), b"ho");
    }

    #[test]
    fn tampering_anywhere_fails() {
        // Every region of message 2 and 3 is bound to the transcript.
        for pos in [0usize, 40, 2000, 2210, 2300, 2531] {
            let e = run(move |m| m[pos] ^= 1, |_| {}).expect_err("tampered msg2 accepted");
            assert!(
                matches!(
                    e,
                    HandshakeError::Decrypt {
                        message: Message::Two,
                        ..
                    }
                ),
                "{pos}: {e:?}"
            );
        }
        for pos in [0usize, 50, 323] {
            let e = run(|_| {}, move |m| m[pos] ^= 1).expect_err("tampered msg3 accepted");
            assert!(
                matches!(
                    e,
                    HandshakeError::Decrypt {
                        message: Message::Three,
                        ..
                    }
                ),
                "{pos}: {e:?}"
            );
        }
    }

    #[test]
    fn wrong_prologue_and_lengths() {
        let (i_id, r_id) = identities();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let (_, mut msg1) = Initiator::start(&i_id, &mut rng);
        assert_eq!(
            Responder::read_message1(&r_id, &msg1[..100], 0, &mut rng).err(),
            Some(HandshakeError::WrongLength {
                message: Message::One,
                expected: 1857,
                got: 100
            })
        );
        msg1[0] = 1;
        assert_eq!(
            Responder::read_message1(&r_id, &msg1, 0, &mut rng).err(),
            Some(HandshakeError::WrongPrologue(1))
        );
        assert!(LocalIdentity::new([0; 32], vec![0; 256]).is_err());
    }

    #[test]
    fn node_to_authority_identity() {
        let seed = [0x31; 32];
        let node = LocalIdentity::from_ed25519_seed(&seed);
        let public: [u8; 32] = node.additional_data().try_into().unwrap();
        let policy = AuthorityPolicy {
            nodes: [public].into_iter().collect(),
        };
        let creds = PeerCredentials {
            additional_data: public.to_vec(),
            static_key: *node.static_public(),
        };
        assert_eq!(policy.authenticate(&creds), Ok(()));
        assert_eq!(
            ExpectPeer::authority(&public).unwrap().authenticate(&creds),
            Ok(())
        );
    }

    #[test]
    fn low_order_key_rejected() {
        let (i_id, r_id) = identities();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let (_, mut msg1) = Initiator::start(&i_id, &mut rng);
        msg1[1..33].fill(0);
        assert_eq!(
            Responder::read_message1(&r_id, &msg1, 0, &mut rng).err(),
            Some(HandshakeError::LowOrderKey(Message::One))
        );
    }

    #[test]
    fn authenticator_rejection_propagates() {
        let (i_id, r_id) = identities();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let (init, msg1) = Initiator::start(&i_id, &mut rng);
        let (_, msg2) = Responder::read_message1(&r_id, &msg1, 0, &mut rng).unwrap();
        let expect = ExpectPeer::new([7; 32], [9; 32]);
        assert_eq!(
            init.read_message2(&msg2, 0, &expect).err(),
            Some(HandshakeError::Auth(AuthError::WrongLinkKey))
        );
    }
}
