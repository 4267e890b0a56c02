//! `credgate config example`: a fully commented configuration with every
//! key of [`crate::config::Config`].
//!
//! The test below loads this text with the real loader ([`Config::load`],
//! `deny_unknown_fields` and validation included) and checks that every
//! field the configuration has appears in it, so a new key cannot be added
//! without documenting it here.
//!
//! [`Config::load`]: crate::config::Config::load

/// The example, as printed.
pub const EXAMPLE: &str = r#"# credgate configuration (printed by `credgate config example`).
#
# Every key is listed. Keys that have a default show it; optional keys
# without a default are commented out. Relative paths are resolved against
# the directory of this file. Unknown keys are refused, and the whole file
# is validated before any socket is bound (`credgate serve --config FILE`).

[server]
# mTLS API listener.
listen = "0.0.0.0:8443"
# Plain-HTTP admin listener: /healthz, /readyz, /metrics. It carries no
# identity: keep it on loopback or a management network.
admin_listen = "127.0.0.1:9090"
# Open connections beyond this are closed at accept, before any TLS work.
max_connections = 4096
# A client that has not completed its TLS handshake by then is dropped
# (100..=60000).
handshake_timeout_ms = 5000
# Requests with a larger body get 413 without the body being read
# (1 KiB..=64 MiB).
max_body_bytes = 1048576
# Idle keep-alive connections are closed after this long (100..=600000).
idle_timeout_ms = 60000
# Once a request head's first byte has arrived, the whole head must arrive
# within this long; the connection is then closed and the attempt audited
# (100..=600000).
header_timeout_ms = 10000
# A request body must arrive within this long, else 408 body_timeout,
# audited (100..=600000).
body_timeout_ms = 10000
# Concurrent streams per HTTP/2 connection (1..=10000).
h2_max_streams = 128
# Grace period for in-flight requests at shutdown.
shutdown_grace_ms = 10000
# This gateway (the whole cluster, with several nodes) as the `aud` of
# consent tokens.
gateway_id = "credgate-zibo"
# This node's name in its audit entries (`gateway`). Default: gateway_id.
# Give each node of a cluster its own, and keep it across restores: at start
# a node appends the outbox entries written under its own node_id.
# node_id = "credgate-zibo-1"
# Default quota of distinct subjects an organisation may query per hour on
# this node (organisations.toml may set its own). Unset: no quota.
# quota_distinct_subjects_per_hour = 500
# Beyond the quota: refuse with 429 (true) or serve and only flag (false).
quota_enforce = true
# More denied attempts than this per hour flags an organisation.
anomaly_denied_per_hour = 100

[tls]
# CA bundle client certificates must chain to.
ca = "certs/ca.pem"
# Server certificate chain and its private key.
cert = "certs/server.pem"
key = "certs/server-key.pem"
# CRLs to honour (PEM or DER); a revoked client is refused at the handshake.
crls = ["certs/crl.pem"]
# Intermediate CA certificates allowed between a client certificate and a
# CA in `ca` (0..=6). 0: issued directly by a configured CA. A CA's own
# pathLenConstraint limits the chains through it further.
max_chain_depth = 0
# How often (seconds, 1..=86400) the CRL files are re-read; a changed CRL is
# applied without a restart, as on SIGHUP or `credgate reload`.
crl_refresh_secs = 60

[policy]
# Directory of the policy files (organisations, purposes, catalog, grants,
# prohibited additions, consent issuers, access).
dir = "policies"
# Consent issuers pinned outside policies/ (`[[issuer]]` blocks only), for a
# development issuer. Leave unset in production.
# extra_consent_issuers = "consent-issuers.toml"

# Keys of the `hash` mask, the current one first (each at least 16 bytes;
# keep them secret). A masked value names its key: `k1:<hex>`, so a caller
# can tell a key rotation from a changed value. Only the first key masks;
# later ones are retired keys, listed so their ids are not reused. The older
# single-key form, mask_key_file = "keys/mask.key", still loads as key k1.
# Rotating: see the operator guide ("Rotate the mask and subject keys").
[[policy.mask_keys]]
id = "k1"
file = "keys/mask.key"

[store]
# sqlite://path/to/file.db (embedded, one serving process) or
# postgres://user@host/db (several nodes).
url = "sqlite://data/credgate.db"
# Connection pool size (PostgreSQL: plus one connection for the audit log
# writer).
max_connections = 8
# How long a request waits for a free connection before it is answered 503
# store_unavailable (100..=120000).
acquire_timeout_ms = 10000

[audit]
# Ed25519 PKCS#8 key that signs checkpoints. Rotating it: see the operator
# guide ("Rotate the checkpoint key").
checkpoint_key_file = "keys/checkpoint.key"
# Keys that co-sign every checkpoint (at most 4), e.g. the previous key for a
# while after a rotation, so auditors pinned to either key verify new
# checkpoints.
# checkpoint_cosign_key_files = ["keys/checkpoint-2026.key"]
# Checkpoint origin line, the log's name for verifiers.
origin = "credgate.zibo.example/audit"
# Seconds between checkpoints while there are new entries (1..=3600).
checkpoint_interval_secs = 10
# Largest group-commit batch of audit entries (1..=10000).
max_batch = 512
# Directory of the audit log's files (SQLite stores only; PostgreSQL keeps
# the log in the database). Default: `<database file>.tlog` beside it.
# log_dir = "data/credgate.db.tlog"
# MiB of write-ahead records after which the log (SQLite stores only)
# snapshots its tiles and starts a new write-ahead file (1..=4096, default
# 64). Its directory holds up to about three times this in write-ahead
# files; a start reads the current one back.
# wal_snapshot_mib = 64

# Keys of the keyed hash (HMAC-SHA-256) of subject ids in the log, the
# current one first (ids: 1-16 characters from a-z0-9, unique; files: at
# least 16 bytes). New entries carry `<id>:<hex>`; a search by subject id
# hashes it under every key listed, so keep a retired key here for as long
# as entries under it must be found by subject id (back them up with the
# store). The older single-key form, subject_key_file = "keys/subject.key",
# still loads as key k1. Rotating: see the operator guide ("Rotate the mask
# and subject keys").
[[audit.subject_keys]]
id = "k1"
file = "keys/subject.key"
"#;

#[cfg(test)]
mod tests {
    use super::EXAMPLE;
    use crate::config::Config;
    use std::collections::BTreeSet;

    /// (section, key) of every `key = …` line, commented out or not.
    fn listed(text: &str) -> BTreeSet<(String, String)> {
        let mut section = String::new();
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let l = line.trim();
            // `[[a.b]]`: the key `b` of section `a`, whose own keys follow.
            if let Some(s) = l.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
                let (parent, key) = s.rsplit_once('.').expect("a nested array of tables");
                out.insert((parent.to_owned(), key.to_owned()));
                section = s.to_owned();
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.to_owned();
                continue;
            }
            let l = l.strip_prefix('#').map(str::trim).unwrap_or(l);
            if let Some((k, _)) = l.split_once(" = ")
                && !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                out.insert((section.clone(), k.to_owned()));
            }
        }
        out
    }

    /// (section, key) of every field of a configuration with every
    /// optional field set.
    fn fields(cfg: &Config) -> BTreeSet<(String, String)> {
        let mut full = cfg.clone();
        full.server.node_id = Some("n".into());
        full.server.quota_distinct_subjects_per_hour = Some(1);
        full.policy.extra_consent_issuers = Some("x".into());
        full.audit.log_dir = Some("x".into());
        full.audit.wal_snapshot_mib = Some(1);
        full.audit.checkpoint_cosign_key_files = vec!["x".into()];
        let v: toml::Table = toml::from_str(&toml::to_string(&full).unwrap()).unwrap();
        let mut out = BTreeSet::new();
        for (section, t) in v {
            for (k, v) in t.as_table().expect("every top-level key is a section") {
                out.insert((section.clone(), k.clone()));
                // An array of tables (`[[audit.subject_keys]]`): its keys too.
                for t in v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_table())
                {
                    for k2 in t.keys() {
                        out.insert((format!("{section}.{k}"), k2.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_example_loads_and_lists_every_config_key() {
        let dir = std::env::temp_dir().join(format!("credgate-cfgex-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "certs/ca.pem",
            "certs/server.pem",
            "certs/server-key.pem",
            "certs/crl.pem",
            "keys/mask.key",
            "keys/subject.key",
            "keys/checkpoint.key",
            "keys/checkpoint-2026.key",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"placeholder-of-16-bytes").unwrap();
        }
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        let path = dir.join("credgate.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("the example must load: {e}"));
        assert_eq!(cfg.server.gateway_id, "credgate-zibo");
        assert_eq!(
            cfg.store.url,
            format!("sqlite://{}", dir.join("data/credgate.db").display())
        );
        let want = fields(&cfg);
        let have = listed(EXAMPLE);
        let missing: Vec<_> = want.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "config keys missing from `credgate config example`: {missing:?}"
        );
        let unknown: Vec<_> = have.difference(&want).collect();
        assert!(
            unknown.is_empty(),
            "keys in the example that Config does not have: {unknown:?}"
        );
        // Every commented-out key is a valid one too: uncommented, it loads.
        let all = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join("consent-issuers.toml"), b"").unwrap();
        std::fs::write(&path, all).unwrap();
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("uncommented: {e}"));
        assert_eq!(cfg.server.node_id.as_deref(), Some("credgate-zibo-1"));
        assert!(cfg.audit.log_dir.is_some() && cfg.policy.extra_consent_issuers.is_some());
        assert_eq!(cfg.audit.subject_key_files()[0].id, "k1");
        assert_eq!(cfg.policy.mask_key_files()[0].id, "k1");
        // The older single-file form still loads, as key id k1.
        let legacy = EXAMPLE
            .replace(
                "[[policy.mask_keys]]\nid = \"k1\"\nfile = \"keys/mask.key\"",
                "mask_key_file = \"keys/mask.key\"",
            )
            .replace(
                "[[audit.subject_keys]]\nid = \"k1\"\nfile = \"keys/subject.key\"",
                "subject_key_file = \"keys/subject.key\"",
            );
        assert!(!legacy.contains("\n[[") && legacy != EXAMPLE);
        std::fs::write(&path, legacy).unwrap();
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("legacy form: {e}"));
        assert_eq!(cfg.audit.subject_key_files()[0].id, "k1");
        assert_eq!(
            cfg.policy.mask_key_files()[0].file,
            dir.join("keys/mask.key")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn is_key_line(s: &str) -> bool {
        s.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
    }
}
