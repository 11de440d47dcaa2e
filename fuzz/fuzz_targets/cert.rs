#![no_main]
//! Certificate envelope (§5.2): lenient decode never panics; the canonical
//! re-encoding decodes to the same certificate and is a fixed point;
//! verification with a fixed key and clock never panics.
use katzenpost::pki::cert::{self, Certificate};
use katzenpost::pki::VerifyingKey;
use libfuzzer_sys::fuzz_target;

/// The epoch-27708 authority key.
const AUTHORITY: [u8; 32] = [
    0x3a, 0x96, 0xe8, 0x51, 0xcc, 0x0d, 0x4b, 0xa4, 0x2c, 0xe6, 0xe6, 0x8d, 0x3d, 0xf0, 0xd8, 0x1c,
    0x3a, 0x53, 0xe9, 0xa8, 0x5a, 0x6a, 0xc1, 0x6d, 0x73, 0x42, 0x18, 0xd8, 0xd6, 0x5c, 0x37, 0x0d,
];
const NOW: u64 = 1_795_525_200;

fuzz_target!(|data: &[u8]| {
    let key = VerifyingKey::from_bytes(&AUTHORITY).expect("valid key");
    let _ = cert::verify(data, &key, NOW);
    if let Ok(c) = Certificate::from_bytes(data) {
        let enc = c.to_bytes();
        let again = Certificate::from_bytes(&enc).expect("canonical encoding decodes");
        // Signatures are emitted sorted; compare as sorted.
        let mut sorted = c.clone();
        sorted
            .signatures
            .sort_by(|a, b| a.identity.cmp(&b.identity));
        assert_eq!(again, sorted);
        assert_eq!(again.to_bytes(), enc);
        let _ = c.verify(&key, NOW);
    }
});
