//! Wire DTOs of `/v1/query` and `/v1/records` parse arbitrary bytes without
//! panicking (the handlers map every error to a 400).
#![no_main]
use credgate::http::dto::{QueryRequest, SubmitRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<QueryRequest>(data);
    let _ = serde_json::from_slice::<SubmitRequest>(data);
});
