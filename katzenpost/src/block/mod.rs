//! End-to-end messages (§6) and the forward payload convention (§2.9).
//!
//! - [`fragment`]: a message cut into [`Block`]s, and their 50,546-byte encoding (§6.1);
//! - [`noise`]: one `Noise_X_25519_ChaChaPoly_SHA256` handshake message per block (§6.2);
//! - [`sphinx_plaintext`]: `flags ‖ reserved ‖ SURB ‖ user payload`, the 51,200-byte
//!   body of every user-level Sphinx packet (§2.9);
//! - [`reassembly`]: putting blocks back together, keyed by (sender key, message id) (§6.3).

pub mod fragment;
pub mod noise;
pub mod reassembly;
pub mod sphinx_plaintext;

pub use fragment::{
    block_count, fragment, fragments, Block, BlockError, BlockRef, MessageId, MAX_MESSAGE_LENGTH,
    MAX_TOTAL_BLOCKS, MESSAGE_ID_LENGTH,
};
pub use noise::{
    decrypt_block, encrypt_block, encrypt_message, open_block, seal_block, NoiseError,
    NOISE_PROTOCOL,
};
pub use reassembly::{
    assemble, Accepted, AddOutcome, PartialMessage, Reassembler, ReassemblyError, ReassemblyKey,
};
pub use sphinx_plaintext::{ForwardBody, ForwardBodyError};
