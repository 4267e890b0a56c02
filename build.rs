//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! the `migrations/` directory at compile time, and cargo does not track
//! files it reads on its own (a new migration was otherwise left out of an
//! incremental build).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
