//! Fuzz `redrive::decoders::journal_file` (see host/src/decoders.rs): it must return for any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| redrive::decoders::journal_file(data));
