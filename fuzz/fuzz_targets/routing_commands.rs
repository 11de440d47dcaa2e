#![no_main]
//! Routing command block parsing: never panics, and whatever parses
//! re-encodes to a block that parses to the same commands.
use katzenpost::sphinx::commands::{encode_block, parse_block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmds) = parse_block(data) {
        let total: usize = cmds.iter().map(|c| c.encoded_len()).sum();
        assert!(total <= data.len());
        let mut block = vec![0xAAu8; total.max(82)];
        encode_block(&cmds, &mut block).expect("parsed commands re-encode");
        assert_eq!(&block[..total], &data[..total]);
        assert_eq!(parse_block(&block).expect("re-encoded block parses"), cmds);
    }
});
