//! The `credgate` binary: parse arguments, install the crypto provider, set
//! up tracing, and hand over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the request path allocates many small,
/// short-lived buffers across threads, where glibc's arenas showed up at
/// ~20% of CPU in profiles (see bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use credgate::cli::{self, AuditCommand, CertsCommand, Cli, Command, LogFormat, PolicyCommand};
use credgate::config::Config;
use credgate::server::Gateway;

fn main() -> ExitCode {
    let args = Cli::parse();
    // One process-wide provider: ring. Nothing else is compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colour only for a terminal (and never with NO_COLOR set).
        LogFormat::Text => logs
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Serve { config } => {
                // First, before the configuration is read, the store
                // migrated or a socket bound: a SIGHUP during startup is
                // queued as a reload, never the default action (which
                // ends the process).
                let hangup = credgate::reload::Hangup::install();
                let cfg = Config::load(&config).map_err(|e| cli::CliError(e.to_string()))?;
                let gw = Gateway::build(&cfg).await?.with_hangup(hangup);
                cli::serve_with(&cfg, gw).await
            }
            Command::Reload { config } => credgate::reload::request(&config)
                .await
                .map(|s| print!("{s}"))
                .map_err(cli::CliError),
            Command::Quickstart(a) => cli::quickstart(a).await,
            Command::Certs(CertsCommand::Init { dir }) => cli::certs_init(&dir),
            Command::Policy(PolicyCommand::Check { dir }) => cli::policy_check(&dir),
            Command::Seed { config, subjects } => {
                let cfg = Config::load(&config).map_err(|e| cli::CliError(e.to_string()))?;
                let n = cli::seed_synthetic(&cfg, subjects).await?;
                println!("seeded {n} synthetic subjects");
                Ok(())
            }
            Command::Policy(PolicyCommand::Explain {
                access: true, dir, ..
            }) => cli::policy_access(&dir).map(|s| print!("{s}")),
            Command::Policy(PolicyCommand::Explain {
                org,
                purpose,
                fields,
                with_consent,
                dir,
                ..
            }) => cli::policy_explain(
                &dir,
                org.as_deref().unwrap_or_default(),
                purpose.as_deref().unwrap_or_default(),
                &fields,
                with_consent,
            )
            .map(|s| print!("{s}")),
            Command::Audit(AuditCommand::Verify {
                file,
                previous,
                keys,
            }) => cli::audit_verify(&file, &keys, previous.as_deref()).map(|s| print!("{s}")),
            Command::Audit(AuditCommand::VerifyProof { proof, keys, entry }) => {
                cli::audit_verify_proof(&proof, &keys, entry.as_deref()).map(|s| print!("{s}"))
            }
            Command::Backup { config, out } => {
                cli::backup(&config, &out).await.map(|s| print!("{s}"))
            }
            Command::Restore {
                from,
                to,
                keys,
                not_before,
                replace,
            } => cli::restore(credgate::backup::RestoreOptions {
                from,
                to,
                keys,
                not_before,
                replace,
            })
            .await
            .map(|s| print!("{s}")),
            Command::Config(cli::ConfigCommand::Example) => {
                print!("{}", credgate::config_example::EXAMPLE);
                Ok(())
            }
            Command::Audit(AuditCommand::Export {
                config,
                out,
                format,
            }) => cli::audit_export(&config, &out, &format)
                .await
                .map(|s| print!("{s}")),
            Command::Audit(AuditCommand::Search {
                config,
                subject_type,
                subject_id,
                subject_hash,
                after,
                limit,
            }) => cli::audit_search(
                &config,
                &subject_type,
                subject_id.as_deref(),
                subject_hash.as_deref(),
                after,
                limit,
            )
            .await
            .map(|s| print!("{s}")),
            Command::Audit(AuditCommand::Reindex { config }) => {
                cli::audit_reindex(&config).await.map(|s| print!("{s}"))
            }
            Command::Consent(c) => cli::consent(c),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
