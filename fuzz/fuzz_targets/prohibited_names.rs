//! Prohibited-name matching over arbitrary names and JSON documents: never
//! panics, and a prohibited key stays prohibited when nested.
#![no_main]
use credgate::policy::Prohibited;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static P: OnceLock<Prohibited> = OnceLock::new();
    let p = P.get_or_init(|| Prohibited::compile(Vec::new()));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = p.classify(s);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let direct = p.scan_json(&v, &mut String::new()).is_some();
        let wrapped = serde_json::json!({"outer": [v]});
        let nested = p.scan_json(&wrapped, &mut String::new()).is_some();
        assert_eq!(direct, nested);
    }
});
