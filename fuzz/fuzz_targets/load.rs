//! Feeds arbitrary bytes to the spec loader and validator as TOML and as
//! YAML. Run with `cargo +nightly fuzz run load` from the crate's folder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantctl::spec::load::{Format, parse_bytes};
use tenantctl::spec::validate::{ValidateOptions, validate};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Toml, Format::Yaml] {
        let Ok(document) = parse_bytes("fuzz", None, ".".into(), format, data.to_vec()) else {
            continue;
        };
        let _ = validate(
            &document,
            ValidateOptions {
                missing_is_error: true,
            },
        );
    }
});
