//! Command-line interface: argument definitions and the commands that are
//! not the server itself (dev certificates, quickstart, policy tools).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::audit::checkpoint::CheckpointSigner;
use crate::config::Config;
use crate::consent::token::KeyAlg;
use crate::consent::tool;
use crate::devcerts::{self, DevOrg};
use crate::ids::SubjectType;
use crate::ids::{CreditCode, SubjectId};
use crate::policy::{self, ConsentInput};
use crate::server::{self, Gateway, StartError};
use crate::store::Store;

mod seed;
pub use seed::{sample_records, seed, seed_synthetic, synthetic_code};

/// credgate: privacy-preserving exchange gateway for public credit information.
#[derive(Debug, Parser)]
#[command(name = "credgate", version, about)]
pub struct Cli {
    /// Log line format on standard error: `text` (human-readable) or `json`
    /// (one JSON object per line, fields at the top level, for a log
    /// collector).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `tracing`'s text lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields (a request's `request_id` and `seq`).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve with a configuration file.
    Serve {
        /// Path to the TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the running gateway to reload `policies/` and its TLS material
    /// (like SIGHUP), over its admin listener; non-zero exit if refused.
    Reload {
        /// The gateway's configuration (for `server.admin_listen`).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generate dev certificates and keys if missing, seed sample data, serve
    /// on 127.0.0.1:8443 and print example requests.
    Quickstart(QuickstartArgs),
    /// Certificate tooling.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Policy tooling.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Load synthetic subjects into a store (benchmarks, load tests).
    /// Development data only: it bypasses the submission endpoint.
    Seed {
        /// Path to the TOML configuration (its store is used).
        #[arg(long, short)]
        config: PathBuf,
        /// Number of synthetic legal persons, each with registration,
        /// licence and penalty records.
        #[arg(long, default_value_t = 10_000)]
        subjects: u32,
    },
    /// Consent tokens: issuer keys and token minting.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Audit log tooling: offline verification and exports.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back up an embedded (SQLite) store while a gateway serves from it:
    /// the database and the audit log, consistent with each other, in one
    /// tar file with a manifest. PostgreSQL: use pg_dump / pg_basebackup.
    Backup {
        /// Gateway configuration (for the store URL and log directory).
        #[arg(long, short)]
        config: PathBuf,
        /// Backup file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a data directory and verify the restored audit
    /// log; refuses a backup that would roll the log back past a checkpoint
    /// an auditor may hold.
    Restore {
        /// Backup file (`credgate backup --out`).
        #[arg(long)]
        from: PathBuf,
        /// Data directory to restore into (`credgate.db` and its log).
        #[arg(long)]
        to: PathBuf,
        /// Checkpoint verifier key (`name+id+key`), or a file of them; repeat
        /// it for the old keys after a rotation.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// A signed checkpoint an auditor may hold (repeatable): the restored
        /// log must extend it.
        #[arg(long)]
        not_before: Vec<PathBuf>,
        /// Replace a store already in the directory (moved aside, not deleted).
        #[arg(long)]
        replace: bool,
    },
    /// Configuration tooling.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a fully commented configuration file with every key.
    Example,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit export offline against the checkpoint verifier key;
    /// exits non-zero and names the first bad line on any tampering.
    Verify {
        /// Export file (JSON Lines or CSV).
        file: PathBuf,
        /// A checkpoint note saved earlier; the export must extend it.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Checkpoint verifier key (`name+id+key`), or a file holding one or
        /// more (one per line). Repeat it to give a verifier list: after a
        /// rotation of the checkpoint key, the new key and the old ones.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// Verify a `c2sp.org/tlog-proof@v1` file offline (from `POST
    /// /v1/audit/proof/inclusion` with `"format": "tlog-proof"`): the
    /// checkpoint is signed by a given key and the entry is in its tree.
    /// Exits non-zero with the reason otherwise.
    VerifyProof {
        /// The proof file (`*.tlog-proof`).
        #[arg(long)]
        proof: PathBuf,
        /// Checkpoint verifier key (`name+id+key`), or a file holding one or
        /// more (one per line); repeatable, as for `audit verify`.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The entry's canonical bytes, if not the proof's own extra data
        /// (e.g. from an export or an entry bundle).
        #[arg(long)]
        entry: Option<PathBuf>,
    },
    /// Export the whole log up to the latest checkpoint, from the store.
    Export {
        /// Gateway configuration (for the store URL).
        #[arg(long, short)]
        config: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// `jsonl` or `csv`.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Search the log by subject, from the store: a subject id is hashed
    /// under every configured subject key (entries from before a key
    /// rotation are found too), or give its hash (`k2:<hex>`, or the bare
    /// hex of version 1-2 entries). Prints `{"seq", "entry"}` JSON lines in
    /// log order. Reads the store like `audit export`; not itself audited.
    Search {
        /// Gateway configuration (the store and the subject keys).
        #[arg(long, short)]
        config: PathBuf,
        /// Subject type of `--subject-id`.
        #[arg(long, default_value = "legal_person", value_parser = ["legal_person", "natural_person"])]
        subject_type: String,
        /// The subject's id (credit code or ID card number).
        #[arg(
            long,
            required_unless_present = "subject_hash",
            conflicts_with = "subject_hash"
        )]
        subject_id: Option<String>,
        /// Subject hashes instead, separated by spaces.
        #[arg(long)]
        subject_hash: Option<String>,
        /// Only entries after this sequence number (the last one printed, for the next page).
        #[arg(long)]
        after: Option<u64>,
        /// Most entries printed (1-10000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Rebuild the search index from the log (searches, reports and
    /// anomaly counts read the index; the log is the record).
    Reindex {
        /// Gateway configuration (for the store URL and log directory).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `credgate audit verify`: the report to print, or why verification failed.
pub fn audit_verify(
    file: &Path,
    keys: &[String],
    previous: Option<&Path>,
) -> Result<String, CliError> {
    crate::audit::verify::verify_file_keys(file, keys, previous)
        .map(|r| r.to_string())
        .map_err(CliError)
}

/// `credgate audit verify-proof`: what was proven, or why not (the body is
/// [`credlog::proof::verify_proof_file`]).
pub fn audit_verify_proof(
    proof: &Path,
    keys: &[String],
    entry: Option<&Path>,
) -> Result<String, CliError> {
    credlog::proof::verify_proof_file(proof, keys, entry)
        .map(|v| v.to_string())
        .map_err(CliError)
}

/// `credgate audit export`.
pub async fn audit_export(config: &Path, out: &Path, format: &str) -> Result<String, CliError> {
    use crate::audit::export::{ExportFormat, export_to_file};
    let cfg = Config::load(config).map_err(|e| CliError(e.to_string()))?;
    let store = Store::connect_config(&cfg)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let format = if format == "csv" {
        ExportFormat::Csv
    } else {
        ExportFormat::Jsonl
    };
    let plan = export_to_file(&store, out, format).await.map_err(CliError);
    store.close().await;
    let plan = plan?;
    Ok(format!(
        "exported {} entries (seq 0..{}) with the checkpoint at tree size {} to {}\n",
        plan.end,
        plan.end,
        plan.tree_size,
        out.display()
    ))
}

/// `credgate backup`.
pub async fn backup(config: &Path, out: &Path) -> Result<String, CliError> {
    let cfg = Config::load(config).map_err(|e| CliError(e.to_string()))?;
    crate::backup::create(&cfg, out)
        .await
        .map(|r| r.to_string())
        .map_err(|e| CliError(e.to_string()))
}

/// `credgate restore`.
pub async fn restore(opts: crate::backup::RestoreOptions) -> Result<String, CliError> {
    crate::backup::restore(&opts)
        .await
        .map(|r| r.to_string())
        .map_err(|e| CliError(e.to_string()))
}

/// `credgate audit search`.
pub async fn audit_search(
    config: &Path,
    subject_type: &str,
    subject_id: Option<&str>,
    subject_hash: Option<&str>,
    after: Option<u64>,
    limit: u32,
) -> Result<String, CliError> {
    use crate::audit::search::{SubjectFilter, search_store};
    let cfg = Config::load(config).map_err(|e| CliError(e.to_string()))?;
    let filter = match (subject_id, subject_hash) {
        (Some(id), _) => SubjectFilter::Id(
            SubjectId::parse(subject_type, id)
                .map_err(|e| CliError(format!("--subject-id: {e}")))?,
        ),
        (None, Some(h)) => SubjectFilter::Hashes(h.to_owned()),
        (None, None) => return Err(CliError("give --subject-id or --subject-hash".into())),
    };
    search_store(&cfg, filter, after, limit)
        .await
        .map_err(CliError)
}

/// `credgate audit reindex`.
pub async fn audit_reindex(config: &Path) -> Result<String, CliError> {
    let cfg = Config::load(config).map_err(|e| CliError(e.to_string()))?;
    let store = Store::connect_config(&cfg)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let n = store.reindex().await.map_err(|e| CliError(e.to_string()));
    store.close().await;
    Ok(format!("indexed {} audit entries\n", n?))
}

/// Options of `quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where certificates go.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Where the database, keys and generated config go.
    #[arg(long, default_value = "credgate-dev")]
    pub data: PathBuf,
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// API listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,
    /// Prepare everything and print the requests, but do not serve.
    #[arg(long)]
    pub no_serve: bool,
    /// Start over: delete the data directory's database, audit log, keys
    /// and config first. Without it an existing `credgate.toml` is reused
    /// as it is (hand edits stay), and `--listen`/`--admin-listen` apply
    /// only when it is first written.
    #[arg(long)]
    pub reset: bool,
}

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a dev CA, a server certificate and client certificates for the
    /// sample organisations (plus expired, revoked and foreign ones for tests).
    Init {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load and validate a policy directory; non-zero exit on any error.
    Check {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Print the decision table for an organisation, purpose and fields, or
    /// with `--access` the role × endpoint matrix of `access.toml`.
    Explain {
        /// Organisation code.
        #[arg(long, required_unless_present = "access")]
        org: Option<String>,
        /// Purpose.
        #[arg(long, required_unless_present = "access")]
        purpose: Option<String>,
        /// Print which roles may call which endpoint instead.
        #[arg(long, conflicts_with_all = ["org", "purpose", "fields", "with_consent"])]
        access: bool,
        /// Comma-separated field names (default: the whole catalog).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Assume a consent token covering every consent-classified field.
        #[arg(long)]
        with_consent: bool,
        /// Policy directory.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
    },
}

/// `consent` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Generate an issuer key pair: writes the PKCS#8 private key (mode 0600,
    /// never overwriting) and prints the `[[issuer]]` block to pin in
    /// `policies/consent.toml`.
    Keygen {
        /// Private key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Signature algorithm the key is pinned to.
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "ES256"])]
        alg: String,
        /// Issuer name for the printed block.
        #[arg(long, default_value = "CHANGE-ME-issuer")]
        iss: String,
        /// Key id for the printed block.
        #[arg(long, default_value = "CHANGE-ME-kid")]
        kid: String,
    },
    /// Sign a consent token and print it.
    Issue(IssueArgs),
}

/// Options of `consent issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Issuer private key (PKCS#8, Ed25519 or P-256; the algorithm follows the key).
    #[arg(long)]
    pub issuer_key: PathBuf,
    /// Key id pinned for that key.
    #[arg(long)]
    pub kid: String,
    /// Issuer name pinned for that key.
    #[arg(long)]
    pub iss: String,
    /// Subject id (unified social credit code or resident ID number).
    #[arg(long)]
    pub sub: String,
    /// Org code of the party allowed to use the consent.
    #[arg(long)]
    pub grantee: String,
    /// Purpose consented to (`collection` for submissions).
    #[arg(long)]
    pub purpose: String,
    /// Comma-separated field names, consent categories or item ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scope: Vec<String>,
    /// Lifetime in seconds from now.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Use limit.
    #[arg(long)]
    pub max_uses: Option<u32>,
    /// Consent was given in writing (natural persons); needs --notice-text.
    #[arg(long, requires = "notice_text")]
    pub written: bool,
    /// The adverse-consequence notice shown before consent; its SHA-256 goes
    /// into the `notice` claim.
    #[arg(long)]
    pub notice_text: Option<String>,
    /// Gateway id the token is addressed to (`server.gateway_id`).
    #[arg(long, default_value = "credgate-dev")]
    pub aud: String,
    /// Token id (default: 128 random bits, hex).
    #[arg(long)]
    pub jti: Option<String>,
}

/// Run a `consent` subcommand.
pub fn consent(cmd: ConsentCommand) -> Result<(), CliError> {
    match cmd {
        ConsentCommand::Keygen { out, alg, iss, kid } => {
            let alg = match alg.as_str() {
                "ES256" => KeyAlg::ES256,
                _ => KeyAlg::EdDSA,
            };
            let block = tool::keygen(&out, alg, &iss, &kid).map_err(|e| CliError(e.0))?;
            eprintln!(
                "wrote {} (PKCS#8 private key: keep it secret)",
                out.display()
            );
            print!("{block}");
            Ok(())
        }
        ConsentCommand::Issue(a) => {
            println!("{}", consent_issue(&a, crate::consent::now_unix())?);
            Ok(())
        }
    }
}

/// Build and sign the token `a` describes, valid from `now`.
pub fn consent_issue(a: &IssueArgs, now: u64) -> Result<String, CliError> {
    let params = tool::IssueParams {
        issuer_key: a.issuer_key.clone(),
        kid: a.kid.clone(),
        iss: a.iss.clone(),
        sub: a.sub.clone(),
        grantee: a.grantee.clone(),
        purpose: a.purpose.clone(),
        scope: a.scope.clone(),
        ttl: a.ttl,
        max_uses: a.max_uses,
        written: a.written,
        notice_text: a.notice_text.clone(),
        aud: a.aud.clone(),
        jti: a.jti.clone(),
    };
    tool::issue(&params, now).map_err(|e| CliError(e.0))
}

/// A command failure: message for stderr, exit code 1 (2 for usage).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        CliError(e.to_string())
    }
}

/// The sample organisations; the first owns the expired/revoked/foreign certs.
pub fn sample_orgs() -> Vec<DevOrg> {
    [
        ("bank", "91370300164100001A", "中国工商银行淄博分行"),
        ("bank2", "91370300164100002D", "淄博农村商业银行"),
        ("department", "113703000043000010", "淄博市市场监督管理局"),
        ("tax", "113703000043000023", "淄博市税务局"),
        ("agency", "91370300MA3C00001U", "淄博诚信信用服务有限公司"),
        ("auditor", "113703000043000036", "淄博市审计局"),
        ("portal", "123703000043000046", "信用淄博网站"),
        ("unregistered", "91370300MA3C00099X", "未登记机构"),
    ]
    .into_iter()
    .map(|(stem, code, name)| DevOrg {
        file_stem: stem.into(),
        org_code: code.into(),
        name: name.into(),
    })
    .collect()
}

/// `credgate certs init`.
pub fn certs_init(dir: &Path) -> Result<(), CliError> {
    let summary = devcerts::init(dir, &sample_orgs()).map_err(|e| CliError(e.to_string()))?;
    println!("{summary}");
    Ok(())
}

/// `credgate policy check`.
pub fn policy_check(dir: &Path) -> Result<(), CliError> {
    let p = policy::load(dir, b"policy-check")
        .map_err(|e| CliError(format!("policy check failed: {e}")))?;
    let c = crate::consent::policy::load(dir, None, "policy-check")
        .map_err(|e| CliError(format!("policy check failed: {e}")))?;
    let hash = crate::reload::policy_hash(dir, None)
        .map_err(|e| CliError(format!("policy check failed: {e}")))?;
    println!(
        "{}: ok — policy hash {hash} — {} organisations, {} purposes, {} classifications, {} items, {} fields, {} prohibited categories, {} consent issuer keys",
        dir.display(),
        p.organisations().len(),
        p.purposes().len(),
        p.classes().len(),
        p.items().len(),
        p.fields().len(),
        p.prohibited().categories().len(),
        c.keys.len()
    );
    Ok(())
}

/// `credgate policy explain`.
/// `credgate policy explain --access`: the role × endpoint matrix.
pub fn policy_access(dir: &Path) -> Result<String, CliError> {
    let p = policy::load(dir, b"policy-explain").map_err(|e| CliError(e.to_string()))?;
    Ok(p.access().matrix())
}

/// `credgate policy explain`: one organisation's decisions for a purpose.
pub fn policy_explain(
    dir: &Path,
    org: &str,
    purpose: &str,
    fields: &[String],
    with_consent: bool,
) -> Result<String, CliError> {
    let p = policy::load(dir, b"policy-explain").map_err(|e| CliError(e.to_string()))?;
    let code = CreditCode::parse(org).map_err(|e| CliError(format!("--org: {e}")))?;
    let o = p
        .organisation(&code)
        .ok_or_else(|| CliError(format!("organisation {code} is not registered")))?;
    let pd = p.purpose(purpose).ok_or_else(|| {
        CliError(format!(
            "unknown purpose '{purpose}' (known: {})",
            p.purposes()
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let names: Vec<String> = if fields.is_empty() {
        p.fields().iter().map(|f| f.name.to_string()).collect()
    } else {
        fields.to_vec()
    };
    let mut out = format!(
        "organisation: {} {} (roles: {})\npurpose:      {} — {} / {}\nconsent:      {}\n\n",
        o.code,
        o.name,
        o.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        pd.name,
        pd.label_zh,
        pd.label_en,
        if with_consent {
            "assumed valid and covering every field"
        } else {
            "none presented"
        }
    );
    out.push_str(&format!(
        "{:<32} {:<10} {:<16} {:<22} {:<9} {}\n",
        "FIELD", "SUBJECT", "CLASS", "REASON", "DECISION", "LABEL"
    ));
    for name in &names {
        let (subject, class, label) = match p.field(name) {
            Some((_, f)) => (
                p.items()[f.item].subject,
                p.class_of(f).tag.clone(),
                format!("{} / {}", f.label_zh, f.label_en),
            ),
            None => (SubjectType::LegalPerson, "-".into(), "-".into()),
        };
        let consent = if with_consent {
            ConsentInput::Valid {
                scope: vec![name.clone()],
                written: true,
            }
        } else {
            ConsentInput::Absent
        };
        let (d, _) = p.decide_field(o, pd, subject, name, &consent);
        let decision = serde_json::to_value(d.decision).unwrap_or_default();
        out.push_str(&format!(
            "{:<32} {:<10} {:<16} {:<22} {:<9} {}\n",
            name,
            match subject {
                SubjectType::LegalPerson => "legal",
                SubjectType::NaturalPerson => "natural",
            },
            class,
            d.reason.as_str(),
            decision.as_str().unwrap_or(""),
            label
        ));
    }
    Ok(out)
}

fn write_key_if_missing(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<(), CliError> {
    if path.exists() {
        return Ok(());
    }
    let bytes = make();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write as _;
    opts.open(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| CliError(format!("{}: {e}", path.display())))
}

fn random_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k).expect("system RNG");
    k
}

/// Write (if missing) the dev keys and a config file; return the config path.
pub fn prepare_dev(args: &QuickstartArgs) -> Result<PathBuf, CliError> {
    certs_init(&args.certs)?;
    if args.reset {
        reset_data_dir(&args.data)?;
    }
    std::fs::create_dir_all(&args.data)
        .map_err(|e| CliError(format!("{}: {e}", args.data.display())))?;
    let existing = args.data.join("credgate.toml");
    if existing.is_file() {
        println!(
            "reusing {} (hand edits kept; `credgate quickstart --reset` starts over)",
            existing.display()
        );
        return std::fs::canonicalize(&existing).map_err(|e| CliError(e.to_string()));
    }
    let data = std::fs::canonicalize(&args.data).map_err(|e| CliError(e.to_string()))?;
    let certs = std::fs::canonicalize(&args.certs).map_err(|e| CliError(e.to_string()))?;
    let policies = std::fs::canonicalize(&args.policies)
        .map_err(|e| CliError(format!("policy directory {}: {e}", args.policies.display())))?;
    write_key_if_missing(&data.join("mask.key"), random_key)?;
    write_key_if_missing(&data.join("subject.key"), random_key)?;
    write_key_if_missing(&data.join("checkpoint.key"), || {
        CheckpointSigner::generate_pkcs8().expect("system RNG")
    })?;
    crate::consent::dev::DevIssuer::ensure(&data).map_err(CliError)?;
    let cfg = format!(
        r#"# Generated by `credgate quickstart` for local development.
[server]
listen = "{listen}"
admin_listen = "{admin}"
gateway_id = "credgate-dev"

[tls]
ca = "{certs}/ca.pem"
cert = "{certs}/server.pem"
key = "{certs}/server-key.pem"
crls = ["{certs}/crl.pem"]

[policy]
dir = "{policies}"
# Development consent issuer (its private key is {data}/consent-issuer.key).
# Production: leave unset and pin issuers in policies/consent.toml.
extra_consent_issuers = "consent-issuers.toml"
# The `hash` mask's keys, the current one first (see `credgate config example`).
[[policy.mask_keys]]
id = "k1"
file = "mask.key"

[store]
url = "sqlite://{data}/credgate.db"

[audit]
checkpoint_key_file = "checkpoint.key"
origin = "credgate.dev/audit"
# Subject keys, the current one first; searches match entries under any.
[[audit.subject_keys]]
id = "k1"
file = "subject.key"
"#,
        listen = args.listen,
        admin = args.admin_listen,
        certs = certs.display(),
        policies = policies.display(),
        data = data.display(),
    );
    let path = data.join("credgate.toml");
    std::fs::write(&path, cfg).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// Files and directories `quickstart` creates in its data directory; `--reset`
/// removes exactly these, never anything else that may live there.
const DEV_DATA: &[&str] = &[
    "credgate.toml",
    "credgate.db",
    "credgate.db-wal",
    "credgate.db-shm",
    "credgate.db.lock",
    "mask.key",
    "subject.key",
    "checkpoint.key",
    "consent-issuer.key",
    "consent-issuers.toml",
    "credgate.db.tlog",
];

fn reset_data_dir(dir: &Path) -> Result<(), CliError> {
    if let Some(db) = Some(dir.join("credgate.db")).filter(|p| p.exists()) {
        // Refuse while a gateway serves from it.
        drop(crate::datadir::DataDirLock::acquire(&db).map_err(|e| CliError(e.to_string()))?);
    }
    for name in DEV_DATA {
        let p = dir.join(name);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => println!("removed {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError(format!("{}: {e}", p.display()))),
        }
    }
    Ok(())
}

/// How to run this very binary, for printed examples: `credgate` may not be
/// on the newcomer's PATH (`cargo run` puts it under `target/`).
pub fn self_path() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| {
            let cwd = std::env::current_dir().ok()?;
            Some(p.strip_prefix(&cwd).map(|r| r.to_path_buf()).unwrap_or(p))
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "credgate".into())
}

/// Example requests printed by quickstart.
pub fn examples(certs: &Path, listen: SocketAddr, admin: SocketAddr, verifier_key: &str) -> String {
    let c = certs.display();
    let curl = |who: &str| {
        format!(
            "curl --cacert {c}/ca.pem --cert {c}/{who}.pem --key {c}/{who}-key.pem -H 'content-type: application/json'"
        )
    };
    format!(
        r#"
credgate is serving on https://{listen} (admin: http://{admin}/metrics)

# A bank reviews an enterprise for a 信易贷 loan (tax data needs the enterprise's authorisation):
{bank} https://{listen}/v1/query -d '{{"subject":{{"type":"legal_person","id":"91370300MA3CXQ001R"}},"purpose":"financing","fields":["enterprise_name","business_status","penalty_content","penalty_date","tax_paid_annual"]}}'

# A credit agency asks about a person (name masked, birth year only, income needs consent, religion is prohibited):
{agency} https://{listen}/v1/query -d '{{"subject":{{"type":"natural_person","id":"370303198503150015"}},"purpose":"credit_report","fields":["person_name","birth_date","monthly_income","religion"]}}'

# A department submits a record; a prohibited field refuses the whole batch (422):
{dept} https://{listen}/v1/records -d '{{"records":[{{"subject":{{"type":"legal_person","id":"91370300MA3DFR002A"}},"item":"admin_licence","fields":{{"licence_no":"JY13703030012345","licence_name":"食品经营许可","血型":"A"}}}}]}}'

# An auditor fetches the signed checkpoint and the key to verify it, searches the log by subject, exports it:
{auditor} https://{listen}/v1/audit/checkpoint
{auditor} https://{listen}/v1/audit/search -d '{{"subject":{{"type":"legal_person","id":"91370300MA3CXQ001R"}}}}'
{auditor} https://{listen}/v1/audit/export -d '{{}}' > audit.jsonl && {bin} audit verify audit.jsonl --key '{verifier_key}'

# Health, readiness, metrics:
curl http://{admin}/readyz
"#,
        bank = curl("bank"),
        agency = curl("agency"),
        dept = curl("department"),
        bin = self_path(),
        auditor = curl("auditor"),
    )
}

/// `credgate quickstart`.
pub async fn quickstart(args: QuickstartArgs) -> Result<(), CliError> {
    let cfg_path = prepare_dev(&args)?;
    let cfg = Config::load(&cfg_path).map_err(|e| CliError(e.to_string()))?;
    let gw = Gateway::build(&cfg).await?;
    let n = seed(&gw.app().store).await?;
    if n > 0 {
        println!("seeded {n} sample records");
    }
    println!("config: {}", cfg_path.display());
    println!("checkpoint verifier key: {}", gw.checkpoint_verifier_key());
    println!(
        "{}",
        examples(
            &args.certs,
            cfg.server.listen,
            cfg.server.admin_listen,
            &gw.checkpoint_verifier_key()
        )
    );
    let data = std::fs::canonicalize(&args.data).map_err(|e| CliError(e.to_string()))?;
    let dev = crate::consent::dev::DevIssuer::ensure(&data).map_err(CliError)?;
    println!(
        "{}",
        crate::consent::dev::example(&dev, &args.certs, cfg.server.listen, &self_path())
    );
    if args.no_serve {
        gw.close().await;
        return Ok(());
    }
    serve_with(&cfg, gw).await
}

/// Bind the listeners of `cfg` and run until Ctrl-C / SIGTERM.
pub async fn serve_with(cfg: &Config, gw: Gateway) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| CliError(format!("cannot listen on {}: {e}", cfg.server.listen)))?;
    let admin = tokio::net::TcpListener::bind(cfg.server.admin_listen)
        .await
        .map_err(|e| CliError(format!("cannot listen on {}: {e}", cfg.server.admin_listen)))?;
    server::run(listener, admin, gw, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
