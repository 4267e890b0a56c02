//! Canonical audit entries: parsing arbitrary bytes never panics, and what
//! parses re-serialises to a form that parses to the same entry.
#![no_main]
use credgate::audit::AuditEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = AuditEntry::parse(data) {
        let again = AuditEntry::parse(&e.canonical()).unwrap();
        assert_eq!(e, again);
    }
});
