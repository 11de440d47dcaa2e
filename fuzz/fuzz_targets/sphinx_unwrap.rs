#![no_main]
//! Sphinx unwrap on arbitrary input with a fixed node key.
//!
//! First byte even: the rest is the packet as is (exercises length, version
//! and MAC checks). First byte odd: the rest is 410 bytes of routing
//! information plaintext plus a payload plaintext, sealed correctly for the
//! node, so parsing and the terminal/forward logic run on arbitrary commands.
use katzenpost::geometry::{HEADER_LENGTH, ROUTING_INFO_LENGTH};
use katzenpost::sphinx::forge::forge_packet;
use katzenpost::sphinx::{public_key, unwrap_packet, UnwrapAction};
use libfuzzer_sys::fuzz_target;

const NODE_SECRET: [u8; 32] = [0x11; 32];
const EPHEMERAL: [u8; 32] = [0x22; 32];
// X25519(NODE_SECRET, 9), computed once.
fn node_public() -> [u8; 32] {
    use std::sync::OnceLock;
    static PK: OnceLock<[u8; 32]> = OnceLock::new();
    *PK.get_or_init(|| public_key(&NODE_SECRET))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut packet = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut ri = [0u8; ROUTING_INFO_LENGTH];
        let n = rest.len().min(ROUTING_INFO_LENGTH);
        ri[..n].copy_from_slice(&rest[..n]);
        forge_packet(&node_public(), &EPHEMERAL, &ri, &rest[n..])
    };
    let len = packet.len();
    if let Ok(out) = unwrap_packet(&NODE_SECRET, &mut packet) {
        assert_eq!(packet.len(), len);
        assert!(len >= HEADER_LENGTH);
        match out.action {
            UnwrapAction::Forward { .. } => {}
            UnwrapAction::Deliver { payload } | UnwrapAction::SurbReply { payload, .. } => {
                assert!(payload.end == len && payload.start <= len);
            }
        }
    }
});
