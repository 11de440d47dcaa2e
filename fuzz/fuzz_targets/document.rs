#![no_main]
//! Documents and descriptors (§5.3, §5.4): verify_and_parse with a fixed
//! authority key and clock, the JSON parsers alone, validation without the
//! authority signature, and the canonical JSON round trip.
use katzenpost::pki::document::{Document, MixDescriptor, RawDocument};
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
    let _ = Document::verify_and_parse(data, &key, NOW);

    if let Ok(raw) = RawDocument::from_json(data) {
        let json = raw.to_json().expect("parsed floats are finite");
        let again = RawDocument::from_json(&json).expect("canonical JSON parses");
        assert_eq!(
            again.to_json().expect("finite"),
            json,
            "canonical JSON is a fixed point"
        );
        assert_eq!(again.epoch, raw.epoch);
        assert_eq!(again.topology, raw.topology);
        assert_eq!(again.providers, raw.providers);
        // Validation (descriptor certificates, structure) without the authority signature.
        let _ = Document::from_raw(&raw, NOW);
    }

    if let Ok((desc, _version)) = MixDescriptor::from_json(data) {
        let _ = desc.validate(27_708);
        if let Ok(json) = desc.to_json() {
            let (again, version) = MixDescriptor::from_json(&json).expect("canonical JSON parses");
            assert_eq!(version, "v0");
            assert_eq!(again.identity_key, desc.identity_key);
            assert_eq!(again.mix_keys, desc.mix_keys);
            assert_eq!(again.addresses, desc.addresses);
            assert_eq!(again.to_json().ok(), Some(json));
        }
    }
});
