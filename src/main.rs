//! The `tsunagi` command line.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tsunagi::{app, config::Config, replay, store, telemetry};

// Ingest allocates a little per request on two threads at once; mimalloc measured faster than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often memory freed since the last look is handed back to the OS.
const RELEASE_FREED_MEMORY: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "tsunagi", version, about = "Connects CRMs to SMS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// TOML config file (or TSUNAGI_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config and print every problem with its key path.
    CheckConfig {
        /// TOML config file (or TSUNAGI_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply the store's migrations.
    Migrate {
        /// TOML config file (or TSUNAGI_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Post fixture files to a running instance's inbound routes and print what each record
    /// became; exits 1 when one is refused or a call fails.
    Replay {
        /// Fixture files: captured (`[capture] dir`) or from tests/fixtures.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The instance's base URL (default: the config's public_base_url).
        #[arg(long)]
        to: Option<String>,
        /// The connection to post to (default: the one the file name names, or the only one of
        /// its kind).
        #[arg(long)]
        connection: Option<String>,
        /// TOML config file of the instance (or TSUNAGI_CONFIG): inbound tokens, Twilio token.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it once; only its hash is kept.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// TOML config file (or TSUNAGI_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.as_deref()).map_err(|problems| {
        eprintln!("the configuration has {} problem(s):", problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        ExitCode::from(2)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => match load(config) {
            Ok(config) => {
                for warning in config.warnings() {
                    eprintln!("warning: {warning}");
                }
                println!("configuration is valid");
                return ExitCode::SUCCESS;
            }
            Err(code) => return code,
        },
        Command::Serve { config } => match load(config) {
            Ok(config) => serve(config).await,
            Err(code) => return code,
        },
        Command::Migrate { config } => match load(config) {
            Ok(config) => store::open_with(&config.database_url, &config.database.connections())
                .await
                .map(|_| println!("migrations applied"))
                .map_err(Into::into),
            Err(code) => return code,
        },
        Command::Replay {
            files,
            to,
            connection,
            config,
        } => match load(config) {
            Ok(config) => replay(&config, &files, to, connection).await,
            Err(code) => return code,
        },
        Command::Keys {
            command: KeysCommand::Create { name, config },
        } => match load(config) {
            Ok(config) => create_key(&config, &name).await,
            Err(code) => return code,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn create_key(config: &Config, name: &str) -> anyhow::Result<()> {
    let store = store::open_with(&config.database_url, &config.database.connections()).await?;
    let key = app::create_key(store.as_ref(), name).await?;
    println!("{key}");
    eprintln!("API key {name:?} created; it is shown only this once");
    Ok(())
}

/// Replay fixture files; a refused record or a failed call is an error.
async fn replay(
    config: &Config,
    files: &[PathBuf],
    to: Option<String>,
    connection: Option<String>,
) -> anyhow::Result<()> {
    let replayer = replay::Replayer::new(config, to, connection)?;
    let all_taken = replay::replay_all(&replayer, files, &mut std::io::stdout()).await?;
    anyhow::ensure!(all_taken, "not every record was taken");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!(%warning, "configuration");
    }
    let running = app::start(config).await?;
    if let Some(key) = &running.created_key {
        println!("Created API key \"default\" (shown only once, keep it): {key}");
    }
    tokio::spawn(release_freed_memory());
    println!("tsunagi listening on http://{}", running.addr);
    tracing::info!(addr = %running.addr, "listening");
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests and sends in flight");
    running.stop().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// mimalloc returns the pages freed at the end of a burst to the OS only on later allocator
/// activity, which an idle server hardly has; a forced collection now and then releases them.
async fn release_freed_memory() {
    let mut tick = tokio::time::interval(RELEASE_FREED_MEMORY);
    loop {
        tick.tick().await;
        // SAFETY: mi_collect only walks mimalloc's own bookkeeping and may be called from any thread.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
