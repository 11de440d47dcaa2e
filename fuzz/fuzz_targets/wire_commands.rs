#![no_main]
//! Wire command decoding (§4.8): never panics; whatever decodes re-encodes to
//! the input minus its zero padding (except the unchecked hint byte of
//! MessageEmpty, which encodes as 0), and decodes again to the same command.
use katzenpost::wire::commands::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::decode(data) {
        let enc = cmd.encode();
        assert!(enc.len() <= data.len());
        let mut expected = data[..enc.len()].to_vec();
        if matches!(cmd, Command::MessageEmpty { .. }) {
            expected[7] = 0;
        }
        assert!(expected == enc, "re-encoding differs from the input");
        assert!(data[enc.len()..].iter().all(|&b| b == 0));
        assert_eq!(Command::decode(&enc).as_ref(), Ok(&cmd));
    }
});
