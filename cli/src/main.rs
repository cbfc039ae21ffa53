//! `satchel`: the desktop command line for the patient-held record.
//!
//! - [`home`]: where a profile lives on disk and how it is unlocked.
//! - [`commands`]: one module per subcommand.
//! - [`output`]: tables for people, JSON for machines.

mod commands;
mod home;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Satchel: your health record, encrypted on your device, shared on your terms.
#[derive(Debug, Parser)]
#[command(name = "satchel", version, about)]
struct Cli {
    /// The profile directory (the record, keys and settings of one user).
    #[arg(long, env = "SATCHEL_HOME", global = true)]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new record and this device's identity in --home.
    Init(commands::init::Args),
    /// Add a FHIR R4 resource or Bundle (JSON file, or - for stdin).
    Add(commands::add::Args),
    /// List entries, optionally filtered.
    List(commands::list::Args),
    /// Show every version of one entry.
    History(commands::history::Args),
    /// Replace an entry's resource with a corrected version (history is kept).
    Amend(commands::amend::Args),
    /// Mark an entry as entered in error (hidden, kept in history).
    EnteredInError(commands::amend::EieArgs),
    /// Counts per section and the newest clinical date.
    Summary(commands::list::SummaryArgs),
    /// This device's identity card and fingerprint.
    Whoami(commands::init::WhoamiArgs),
    /// Sync with a relay (one round, or --watch to stay subscribed).
    Sync(commands::sync::Args),
    /// Add another device of yours: prints a one-time code for it.
    LinkDevice(commands::sync::LinkArgs),
    /// Set up this home as another device of an existing record.
    JoinDevice(commands::sync::JoinArgs),
    /// Run a relay in this process (embedded SQLite).
    Serve(commands::serve::Args),
    /// Run a self-contained demonstration in a temporary home.
    Demo(commands::demo::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => commands::init::run(cli.home, args),
        Command::Add(args) => commands::add::run(cli.home, args),
        Command::List(args) => commands::list::run(cli.home, args),
        Command::History(args) => commands::history::run(cli.home, args),
        Command::Amend(args) => commands::amend::run(cli.home, args),
        Command::EnteredInError(args) => commands::amend::run_eie(cli.home, args),
        Command::Summary(args) => commands::list::run_summary(cli.home, args),
        Command::Whoami(args) => commands::init::run_whoami(cli.home, args),
        Command::Sync(args) => commands::sync::run(cli.home, args),
        Command::LinkDevice(args) => commands::sync::run_link(cli.home, args),
        Command::JoinDevice(args) => commands::sync::run_join(cli.home, args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
