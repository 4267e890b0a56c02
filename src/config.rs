//! Gateway configuration: one TOML file, validated before any socket is bound.
//!
//! Relative paths are resolved against the directory of the config file, so
//! a deployment directory can be moved as a whole. Unknown keys are errors
//! (a misspelt `max_conections` must not silently fall back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used, with the file and (when known) line.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Certificates.
    pub tls: TlsConfig,
    /// Where `policies/` lives.
    pub policy: PolicyConfig,
    /// Database.
    pub store: StoreConfig,
    /// Audit log keys and checkpointing.
    pub audit: AuditConfig,
}

/// Listeners and resource limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// mTLS API listener.
    pub listen: SocketAddr,
    /// Plain-HTTP admin listener for /healthz, /readyz, /metrics. Keep it on
    /// loopback or a management network: it carries no identity.
    pub admin_listen: SocketAddr,
    /// Open connections beyond this are closed at accept.
    pub max_connections: usize,
    /// A client that has not completed its handshake by then is dropped, so
    /// a silent client cannot hold a slot.
    pub handshake_timeout_ms: u64,
    /// Requests with a larger body get 413 without the body being read.
    pub max_body_bytes: usize,
    /// Idle keep-alive connections are closed after this long.
    pub idle_timeout_ms: u64,
    /// Once the first byte of a request head has arrived, the whole head
    /// (request line and headers) must arrive within this long, on the
    /// first request of a connection as on every keep-alive request; the
    /// connection is then closed and the attempt audited.
    pub header_timeout_ms: u64,
    /// A request body must arrive within this long; otherwise 408
    /// `body_timeout`, audited, and the connection is closed.
    pub body_timeout_ms: u64,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace_ms: u64,
    /// Identifies this gateway — the whole cluster, when several nodes serve
    /// behind a load balancer — as the `aud` of consent tokens.
    pub gateway_id: String,
    /// Names this node in its audit entries (`gateway` field), so auditors
    /// can tell which node served a request. Defaults to `gateway_id`; give
    /// each node of a cluster its own.
    pub node_id: Option<String>,
    /// Default quota of distinct subjects an organisation may query per
    /// hour on this node, for organisations without their own in
    /// `organisations.toml`. Unset: no quota.
    pub quota_distinct_subjects_per_hour: Option<u32>,
    /// Refuse queries beyond the quota with 429 (true) or serve them and
    /// only flag the organisation (false).
    pub quota_enforce: bool,
    /// More denied attempts than this per hour flags an organisation.
    pub anomaly_denied_per_hour: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".parse().expect("literal address"),
            admin_listen: "127.0.0.1:9090".parse().expect("literal address"),
            max_connections: 4096,
            handshake_timeout_ms: 5_000,
            max_body_bytes: 1 << 20,
            idle_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            h2_max_streams: 128,
            shutdown_grace_ms: 10_000,
            gateway_id: "credgate-dev".into(),
            node_id: None,
            quota_distinct_subjects_per_hour: None,
            quota_enforce: true,
            anomaly_denied_per_hour: 100,
        }
    }
}

impl ServerConfig {
    /// Handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// Certificate files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle that client certificates must chain to.
    pub ca: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CRLs to honour.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Most intermediate CA certificates allowed between a client's certificate and a CA in
    /// `ca`, refused at the handshake beyond that. 0 (the default): client certificates must
    /// be issued directly by a configured CA. At most 6 (webpki's own limit).
    #[serde(default)]
    pub max_chain_depth: u8,
    /// Seconds between checks of the CRL files for a new version (and the
    /// CRLs are also re-read when one's `nextUpdate` passes); a changed file
    /// is reloaded with the rest of the TLS material. Default 60; 1 to 86400.
    #[serde(default = "default_crl_refresh_secs")]
    pub crl_refresh_secs: u64,
}

fn default_crl_refresh_secs() -> u64 {
    60
}

/// Largest `tls.max_chain_depth`: webpki never builds a path with more intermediates.
pub const MAX_CHAIN_DEPTH: u8 = 6;

/// Policy location.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory holding the policy TOML files.
    pub dir: PathBuf,
    /// File with the key for the `hash` mask, as key id `k1`: the form
    /// before key ids (give this or `mask_keys`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_key_file: Option<PathBuf>,
    /// The keys of the `hash` mask, the current one first: masked values
    /// are `<id>:<hex>` under it. Later ones are retired keys, kept only so
    /// their ids are never reused for another key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_keys: Vec<KeyFile>,
    /// Additional consent issuers (`[[issuer]]` blocks only) pinned outside
    /// `policies/`, for a development issuer whose private key must not be
    /// committed. Leave unset in production; see `consent` module docs.
    #[serde(default)]
    pub extra_consent_issuers: Option<PathBuf>,
}

/// Database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://…`.
    pub url: String,
    /// Connection pool size.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
    /// How long a request waits for a free pool connection before it is
    /// answered 503 `store_unavailable`.
    #[serde(default = "default_acquire_timeout")]
    pub acquire_timeout_ms: u64,
}

fn default_pool() -> u32 {
    8
}

fn default_acquire_timeout() -> u64 {
    crate::store::DEFAULT_ACQUIRE_TIMEOUT.as_millis() as u64
}

/// Audit log settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Key for the keyed hash of subject ids (HMAC-SHA-256), as key id
    /// `k1`: the form before key ids (give this or `subject_keys`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key_file: Option<PathBuf>,
    /// Keys for the keyed hash of subject ids (HMAC-SHA-256): the log holds
    /// no clear ids, yet an auditor presenting an id can search for it. The
    /// first hashes new entries (`<id>:<hex>`); searches hash a presented id
    /// under every one, so entries under a retired key stay searchable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_keys: Vec<KeyFile>,
    /// Ed25519 PKCS#8 key that signs checkpoints.
    pub checkpoint_key_file: PathBuf,
    /// Further Ed25519 PKCS#8 keys that co-sign every checkpoint (one more
    /// signature line each), e.g. the previous key during a rotation, so
    /// that auditors pinned to either key verify new checkpoints. At most
    /// [`credlog::checkpoint::MAX_COSIGNERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoint_cosign_key_files: Vec<PathBuf>,
    /// Checkpoint origin line, e.g. `credgate.zibo.example/audit`.
    pub origin: String,
    /// Seconds between checkpoints while there are new entries.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// Largest group-commit batch.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Directory of the audit log's tiles (SQLite stores only; PostgreSQL
    /// keeps them in the database). Default: `<database file>.tlog` beside
    /// the SQLite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// MiB of write-ahead records after which the embedded log snapshots
    /// its tiles and begins a new write-ahead file (SQLite stores only;
    /// 1..=4096, default 64). The log's directory holds up to about three
    /// times this in write-ahead files; a start reads the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_snapshot_mib: Option<u64>,
}

/// A key file with its key id (`[[audit.subject_keys]]`, `[[policy.mask_keys]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// 1 to 16 characters from `a-z0-9`, unique in its list; carried in
    /// every hash the key makes.
    pub id: String,
    /// The key: at least [`MIN_KEY_BYTES`] bytes.
    pub file: PathBuf,
}

/// Most keys in one list (a search hashes a subject under each).
pub const MAX_KEYS: usize = 16;

/// Shortest key file accepted.
pub const MIN_KEY_BYTES: usize = 16;

/// A key read from its file, with its id.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedKey {
    /// Key id.
    pub id: String,
    /// Key bytes.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamedKey({}, ..)", self.id)
    }
}

/// The effective key list of a legacy single file or a list of key files.
fn key_list(legacy: Option<&PathBuf>, list: &[KeyFile]) -> Vec<KeyFile> {
    match legacy {
        Some(file) => vec![KeyFile {
            id: credlog::entry::LEGACY_KEY_ID.to_owned(),
            file: file.clone(),
        }],
        None => list.to_vec(),
    }
}

/// A key list that cannot be used: which list, which file (when one is at
/// fault) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{list}: {}{problem}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct KeyListError {
    /// `audit.subject_keys` or `policy.mask_keys`.
    pub list: String,
    /// The key file at fault, if one is.
    pub file: Option<PathBuf>,
    /// What is wrong.
    pub problem: String,
}

/// Check a key list (`what` names it in errors): one form, at least one
/// key, well-formed unique ids, and every file readable and long enough.
/// Returns the keys read, the current one first.
pub fn read_key_list(
    what: &str,
    legacy_name: &str,
    legacy: Option<&PathBuf>,
    list: &[KeyFile],
) -> Result<Vec<NamedKey>, KeyListError> {
    let err = |file: Option<&PathBuf>, problem: String| KeyListError {
        list: what.to_owned(),
        file: file.cloned(),
        problem,
    };
    if legacy.is_some() && !list.is_empty() {
        return Err(err(None, format!("give {legacy_name} or {what}, not both")));
    }
    let keys = key_list(legacy, list);
    if keys.is_empty() {
        return Err(err(
            None,
            format!("at least one key is needed (or {legacy_name})"),
        ));
    }
    if keys.len() > MAX_KEYS {
        return Err(err(None, format!("at most {MAX_KEYS} keys")));
    }
    let mut out: Vec<NamedKey> = Vec::with_capacity(keys.len());
    for k in &keys {
        if !credlog::entry::valid_key_id(&k.id) {
            return Err(err(
                Some(&k.file),
                format!(
                    "key id {:?} must be 1-{} characters from a-z0-9",
                    k.id,
                    credlog::entry::MAX_KEY_ID_LEN
                ),
            ));
        }
        if out.iter().any(|o| o.id == k.id) {
            return Err(err(
                Some(&k.file),
                format!("key id {:?} is given twice", k.id),
            ));
        }
        let key =
            std::fs::read(&k.file).map_err(|e| err(Some(&k.file), format!("cannot read: {e}")))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(err(
                Some(&k.file),
                format!("key is shorter than {MIN_KEY_BYTES} bytes"),
            ));
        }
        out.push(NamedKey {
            id: k.id.clone(),
            key,
        });
    }
    Ok(out)
}

impl PolicyConfig {
    /// The mask keys, the current one first (`mask_key_file` is key `k1`).
    pub fn mask_key_files(&self) -> Vec<KeyFile> {
        key_list(self.mask_key_file.as_ref(), &self.mask_keys)
    }

    /// Read and check the mask keys (see [`read_key_list`]).
    pub fn read_mask_keys(&self) -> Result<Vec<NamedKey>, KeyListError> {
        read_key_list(
            "policy.mask_keys",
            "policy.mask_key_file",
            self.mask_key_file.as_ref(),
            &self.mask_keys,
        )
    }
}

impl AuditConfig {
    /// The subject keys, the current one first (`subject_key_file` is key `k1`).
    pub fn subject_key_files(&self) -> Vec<KeyFile> {
        key_list(self.subject_key_file.as_ref(), &self.subject_keys)
    }

    /// Read and check the subject keys (see [`read_key_list`]).
    pub fn read_subject_keys(&self) -> Result<Vec<NamedKey>, KeyListError> {
        read_key_list(
            "audit.subject_keys",
            "audit.subject_key_file",
            self.subject_key_file.as_ref(),
            &self.subject_keys,
        )
    }
}

fn default_checkpoint_secs() -> u64 {
    10
}

/// Largest `audit.wal_snapshot_mib` (4 GiB of write-ahead records).
pub const MAX_WAL_SNAPSHOT_MIB: u64 = 4096;

fn default_batch() -> usize {
    512
}

impl Config {
    /// Read, parse, resolve relative paths and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve(base);
        cfg.validate().map_err(|message| ConfigError {
            file: path.to_owned(),
            line: None,
            message,
        })?;
        Ok(cfg)
    }

    /// Make every relative path relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        self.tls.crls.iter_mut().for_each(fix);
        fix(&mut self.policy.dir);
        self.policy.mask_key_file.iter_mut().for_each(fix);
        self.policy
            .mask_keys
            .iter_mut()
            .for_each(|k| fix(&mut k.file));
        self.policy.extra_consent_issuers.iter_mut().for_each(fix);
        self.audit.subject_key_file.iter_mut().for_each(fix);
        self.audit
            .subject_keys
            .iter_mut()
            .for_each(|k| fix(&mut k.file));
        fix(&mut self.audit.checkpoint_key_file);
        self.audit
            .checkpoint_cosign_key_files
            .iter_mut()
            .for_each(fix);
        self.audit.log_dir.iter_mut().for_each(fix);
        if let Some(rest) = self.store.url.strip_prefix("sqlite://") {
            let p = Path::new(rest.split('?').next().unwrap_or(rest));
            if p.is_relative() && !rest.starts_with(":memory:") {
                let q = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
                self.store.url = format!("sqlite://{}{}", base.join(p).display(), q);
            }
        }
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.server;
        if s.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if !(100..=60_000).contains(&s.handshake_timeout_ms) {
            return Err("server.handshake_timeout_ms must be between 100 and 60000".into());
        }
        for (what, v) in [
            ("server.header_timeout_ms", s.header_timeout_ms),
            ("server.body_timeout_ms", s.body_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
        ] {
            if !(100..=600_000).contains(&v) {
                return Err(format!("{what} must be between 100 and 600000"));
            }
        }
        if !(1..=86_400).contains(&self.tls.crl_refresh_secs) {
            return Err("tls.crl_refresh_secs must be between 1 and 86400".into());
        }
        if !(1..=10_000).contains(&s.h2_max_streams) {
            return Err("server.h2_max_streams must be between 1 and 10000".into());
        }
        if !(1024..=64 << 20).contains(&s.max_body_bytes) {
            return Err("server.max_body_bytes must be between 1 KiB and 64 MiB".into());
        }
        if s.gateway_id.is_empty() || s.node_id.as_deref() == Some("") {
            return Err("server.gateway_id and server.node_id must not be empty".into());
        }
        if s.quota_distinct_subjects_per_hour == Some(0) {
            return Err("server.quota_distinct_subjects_per_hour must be at least 1".into());
        }
        if s.anomaly_denied_per_hour == 0 {
            return Err("server.anomaly_denied_per_hour must be at least 1".into());
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres://")) {
            return Err("store.url must start with sqlite: or postgres://".into());
        }
        if self.tls.max_chain_depth > MAX_CHAIN_DEPTH {
            return Err(format!(
                "tls.max_chain_depth must be between 0 and {MAX_CHAIN_DEPTH}"
            ));
        }
        if self.store.max_connections == 0 {
            return Err("store.max_connections must be at least 1".into());
        }
        if !(100..=120_000).contains(&self.store.acquire_timeout_ms) {
            return Err("store.acquire_timeout_ms must be between 100 and 120000".into());
        }
        let a = &self.audit;
        if a.origin.is_empty() || a.origin.contains(char::is_whitespace) {
            return Err("audit.origin must be non-empty and contain no whitespace".into());
        }
        if !(1..=3600).contains(&a.checkpoint_interval_secs) {
            return Err("audit.checkpoint_interval_secs must be between 1 and 3600".into());
        }
        if !(1..=10_000).contains(&a.max_batch) {
            return Err("audit.max_batch must be between 1 and 10000".into());
        }
        if let Some(mib) = a.wal_snapshot_mib {
            if !(1..=MAX_WAL_SNAPSHOT_MIB).contains(&mib) {
                return Err(format!(
                    "audit.wal_snapshot_mib must be between 1 and {MAX_WAL_SNAPSHOT_MIB}"
                ));
            }
            if !self.store.url.starts_with("sqlite:") {
                return Err(
                    "audit.wal_snapshot_mib is for SQLite stores; PostgreSQL keeps the log in the database"
                        .into(),
                );
            }
        }
        if a.log_dir.is_some() && !self.store.url.starts_with("sqlite:") {
            return Err(
                "audit.log_dir is for SQLite stores; PostgreSQL keeps the log in the database"
                    .into(),
            );
        }
        if a.checkpoint_cosign_key_files.len() > credlog::checkpoint::MAX_COSIGNERS {
            return Err(format!(
                "audit.checkpoint_cosign_key_files: at most {} keys",
                credlog::checkpoint::MAX_COSIGNERS
            ));
        }
        let files = [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("audit.checkpoint_key_file", &a.checkpoint_key_file),
        ];
        let cosign = a
            .checkpoint_cosign_key_files
            .iter()
            .map(|p| ("audit.checkpoint_cosign_key_files", p));
        for (what, p) in files.into_iter().chain(cosign) {
            if !p.is_file() {
                return Err(format!("{what}: {} does not exist", p.display()));
            }
        }
        self.policy.read_mask_keys().map_err(|e| e.to_string())?;
        a.read_subject_keys().map_err(|e| e.to_string())?;
        if let Some(p) = &self.policy.extra_consent_issuers
            && !p.is_file()
        {
            return Err(format!(
                "policy.extra_consent_issuers: {} does not exist",
                p.display()
            ));
        }
        for p in &self.tls.crls {
            if !p.is_file() {
                return Err(format!("tls.crls: {} does not exist", p.display()));
            }
        }
        if !self.policy.dir.is_dir() {
            return Err(format!(
                "policy.dir: {} is not a directory",
                self.policy.dir.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest configuration that parses (its files do not exist).
    fn minimal() -> Config {
        toml::from_str(
            "[tls]\nca = \"ca.pem\"\ncert = \"s.pem\"\nkey = \"k.pem\"\n\
             [policy]\ndir = \"p\"\nmask_key_file = \"m\"\n\
             [store]\nurl = \"sqlite://x.db\"\n\
             [audit]\nsubject_key_file = \"s\"\ncheckpoint_key_file = \"c\"\norigin = \"o\"\n",
        )
        .unwrap()
    }

    #[test]
    fn unknown_key_names_the_line() {
        let dir = std::env::temp_dir().join(format!("credgate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_conections = 3\n",
        )
        .unwrap();
        let e = Config::load(&f).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("max_conections"), "{e}");
        std::fs::write(&f, "[tls]\nca = \"ca.pem\"\nmax_chain_dept = 1\n").unwrap();
        let e = Config::load(&f).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("max_chain_dept"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn max_chain_depth_defaults_to_zero_and_is_bounded() {
        let mut cfg = minimal();
        assert_eq!(cfg.tls.max_chain_depth, 0);
        cfg.tls.max_chain_depth = MAX_CHAIN_DEPTH + 1;
        // Checked before any file is looked at.
        assert_eq!(
            cfg.validate().unwrap_err(),
            "tls.max_chain_depth must be between 0 and 6"
        );
        cfg.tls.max_chain_depth = MAX_CHAIN_DEPTH;
        assert!(cfg.validate().unwrap_err().contains("does not exist"));
    }

    #[test]
    fn the_store_acquire_timeout_defaults_to_ten_seconds_and_is_bounded() {
        let mut cfg = minimal();
        assert_eq!(cfg.store.acquire_timeout_ms, 10_000);
        for bad in [0, 99, 120_001] {
            cfg.store.acquire_timeout_ms = bad;
            assert_eq!(
                cfg.validate().unwrap_err(),
                "store.acquire_timeout_ms must be between 100 and 120000"
            );
        }
        cfg.store.acquire_timeout_ms = 100;
        assert!(cfg.validate().unwrap_err().contains("does not exist"));
    }

    #[test]
    fn the_wal_snapshot_size_is_bounded_and_for_sqlite_only() {
        let mut cfg = minimal();
        assert_eq!(cfg.audit.wal_snapshot_mib, None);
        for bad in [0, MAX_WAL_SNAPSHOT_MIB + 1] {
            cfg.audit.wal_snapshot_mib = Some(bad);
            assert_eq!(
                cfg.validate().unwrap_err(),
                "audit.wal_snapshot_mib must be between 1 and 4096"
            );
        }
        cfg.audit.wal_snapshot_mib = Some(1);
        assert!(cfg.validate().unwrap_err().contains("does not exist"));
        cfg.store.url = "postgres://u@h/db".into();
        assert!(
            cfg.validate()
                .unwrap_err()
                .starts_with("audit.wal_snapshot_mib is for SQLite stores")
        );
        let parsed: Config = toml::from_str(
            "[tls]\nca = \"ca.pem\"\ncert = \"s.pem\"\nkey = \"k.pem\"\n\
             [policy]\ndir = \"p\"\nmask_key_file = \"m\"\n\
             [store]\nurl = \"sqlite://x.db\"\n\
             [audit]\nsubject_key_file = \"s\"\ncheckpoint_key_file = \"c\"\norigin = \"o\"\n\
             wal_snapshot_mib = 8\n",
        )
        .unwrap();
        assert_eq!(parsed.audit.wal_snapshot_mib, Some(8));
    }

    #[test]
    fn key_lists_are_validated_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("credgate-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        let good2 = dir.join("good2.key");
        let short = dir.join("short.key");
        std::fs::write(&good, b"0123456789abcdef").unwrap();
        std::fs::write(&good2, b"fedcba9876543210").unwrap();
        std::fs::write(&short, b"0123456789abcde").unwrap();
        let missing = dir.join("missing.key");
        let k = |id: &str, file: &PathBuf| KeyFile {
            id: id.into(),
            file: file.clone(),
        };
        let read = |legacy: Option<&PathBuf>, list: &[KeyFile]| {
            read_key_list("audit.subject_keys", "audit.subject_key_file", legacy, list)
        };
        // Good: a list, the first current; the legacy file as k1.
        let keys = read(None, &[k("k2", &good2), k("k1", &good)]).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        assert_eq!(keys[0].key, b"fedcba9876543210");
        let keys = read(Some(&good), &[]).unwrap();
        assert_eq!((keys[0].id.as_str(), keys.len()), ("k1", 1));
        // Bad: each refusal says what and, for a file, which.
        let cases: Vec<(Option<&PathBuf>, Vec<KeyFile>, &str)> = vec![
            (None, vec![], "at least one key"),
            (Some(&good), vec![k("k2", &good2)], "not both"),
            (None, vec![k("k2", &good2), k("k2", &good)], "given twice"),
            (None, vec![k("K2", &good2)], "must be 1-16 characters"),
            (None, vec![k("", &good2)], "must be 1-16 characters"),
            (None, vec![k("k-2", &good2)], "must be 1-16 characters"),
            (
                None,
                vec![k(&"a".repeat(17), &good2)],
                "must be 1-16 characters",
            ),
            (None, vec![k("k2", &short)], "shorter than 16 bytes"),
            (
                None,
                vec![k("k2", &good2), k("k1", &missing)],
                "cannot read",
            ),
            (None, vec![k("k2", &dir)], "cannot read"),
            (
                None,
                (0..=MAX_KEYS).map(|i| k(&format!("k{i}"), &good)).collect(),
                "at most 16 keys",
            ),
        ];
        for (legacy, list, want) in cases {
            let e = read(legacy, &list).unwrap_err().to_string();
            assert!(e.contains(want), "{list:?}: {e}");
            assert!(
                e.starts_with("audit.subject_keys") || e.starts_with("give"),
                "{e}"
            );
        }
        for (list, file) in [
            (vec![k("k2", &short)], &short),
            (vec![k("k2", &good2), k("k1", &missing)], &missing),
            (vec![k("k2", &good2), k("k2", &good)], &good),
            (vec![k("K2", &good2)], &good2),
        ] {
            let e = read(None, &list).unwrap_err();
            assert_eq!(e.file.as_ref(), Some(file), "{e}");
            assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        }
        // Through the loader: refused before anything is opened, naming the
        // config file and the key file; unknown keys in a key entry refused.
        std::fs::write(dir.join("ca.pem"), b"x").unwrap();
        std::fs::create_dir_all(dir.join("p")).unwrap();
        let base = "[tls]\nca = \"ca.pem\"\ncert = \"ca.pem\"\nkey = \"ca.pem\"\n\
             [policy]\ndir = \"p\"\nmask_key_file = \"good.key\"\n\
             [store]\nurl = \"sqlite://x.db\"\n\
             [audit]\ncheckpoint_key_file = \"good.key\"\norigin = \"o\"\n";
        let f = dir.join("credgate.toml");
        for (extra, want) in [
            (
                "[[audit.subject_keys]]\nid = \"k2\"\nfile = \"short.key\"\n",
                "short.key: key is shorter than 16 bytes",
            ),
            (
                "[[audit.subject_keys]]\nid = \"k2\"\nfile = \"good.key\"\nmode = 1\n",
                "unknown field `mode`",
            ),
            ("", "audit.subject_keys: at least one key is needed"),
        ] {
            std::fs::write(&f, format!("{base}{extra}")).unwrap();
            let e = Config::load(&f).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.starts_with(&f.display().to_string()), "{e}");
        }
        std::fs::write(
            &f,
            format!("{base}[[audit.subject_keys]]\nid = \"k2\"\nfile = \"good2.key\"\n[[audit.subject_keys]]\nid = \"k1\"\nfile = \"good.key\"\n"),
        )
        .unwrap();
        let cfg = Config::load(&f).unwrap();
        assert_eq!(
            cfg.audit.subject_key_files(),
            [
                k("k2", &dir.join("good2.key")),
                k("k1", &dir.join("good.key"))
            ]
        );
        // It serialises back to a file that loads the same.
        std::fs::write(&f, toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(
            Config::load(&f).unwrap().audit.subject_keys,
            cfg.audit.subject_keys
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
