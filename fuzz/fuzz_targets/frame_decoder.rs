#![no_main]
//! Feeds arbitrary bytes to the receiving side of an established link
//! session (sans-I/O `FrameDecoder`). Two modes, chosen by the first byte:
//! raw attacker bytes in arbitrary chunks, or genuine frames (built from the
//! input with the matching sender) with an optional bit flip, which must
//! decode to exactly what was sent unless a flip happened.

use katzenpost::wire::framing::{FrameDecoder, FrameSender};
use katzenpost::wire::handshake::CipherState;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x42; 32];

fn drain(dec: &mut FrameDecoder, out: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match dec.decode() {
            Ok(Some(cmd)) => out.push(cmd),
            Ok(None) => return true,
            Err(_) => {
                assert!(dec.is_poisoned());
                assert!(dec.decode().is_err());
                return false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut dec = FrameDecoder::new(CipherState::new(KEY, 0));
    let mut got = Vec::new();
    if mode & 1 == 0 {
        // Raw bytes, chunk size from the mode byte.
        let chunk = (mode as usize >> 1) + 1;
        for c in rest.chunks(chunk) {
            dec.push(c);
            if !drain(&mut dec, &mut got) {
                return;
            }
        }
        return;
    }
    // Genuine frames: commands are length-prefixed (one byte) slices of the input.
    let mut tx = FrameSender::new(CipherState::new(KEY, 0));
    let mut cmds = Vec::new();
    let mut wire = Vec::new();
    let mut r = rest;
    while let Some((&len, tail)) = r.split_first() {
        let n = (len as usize).min(tail.len());
        let (cmd, tail) = tail.split_at(n);
        tx.seal_into(cmd, &mut wire).expect("small command seals");
        cmds.push(cmd.to_vec());
        r = tail;
    }
    let flip = mode & 2 != 0 && !wire.is_empty();
    if flip {
        let pos = (mode as usize * 7919) % wire.len();
        wire[pos] ^= 1 << (mode >> 5);
    }
    let chunk = ((mode as usize >> 2) & 7) * 13 + 1;
    let mut ok = true;
    for c in wire.chunks(chunk) {
        dec.push(c);
        if !drain(&mut dec, &mut got) {
            ok = false;
            break;
        }
    }
    if !flip {
        assert!(ok, "genuine frames must decode");
        assert_eq!(got, cmds);
        assert!(!dec.is_mid_frame());
    } else {
        // Every byte is authenticated and every frame was delivered whole.
        assert!(!ok, "a flipped bit went unnoticed");
    }
});
