#![no_main]
use libfuzzer_sys::fuzz_target;

// Placeholder: to be filled in by the owner of this parser.
fuzz_target!(|data: &[u8]| {
    let _ = data;
});
