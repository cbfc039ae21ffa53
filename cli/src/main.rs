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
    /// Export the record as FHIR: a collection Bundle or an International Patient Summary.
    Export(commands::export::Args),
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
    /// Invite a carer, provider or manager: prints a one-time code.
    Invite(commands::share::InviteArgs),
    /// Answer an invite with this home's identity (a carer's or provider's home).
    Accept(commands::share::AcceptArgs),
    /// List pending invites, or approve the identity that answered one.
    Approve(commands::share::ApproveArgs),
    /// Who has access to the record, to which sections, until when.
    Grants(commands::share::GrantsArgs),
    /// Take access back (all, or some sections); rotates the keys.
    Revoke(commands::share::RevokeArgs),
    /// Make a recovery key to write down.
    RecoveryKey(commands::share::RecoveryKeyArgs),
    /// Restore the record on a new device from the relay with a recovery key.
    Restore(commands::share::RestoreArgs),
    /// Who viewed and who contributed what, when (owner and managers).
    Audit(commands::share::AuditArgs),
    /// For provider systems: push FHIR into a record shared with this home.
    #[command(subcommand)]
    Provider(commands::provider::Command),
    /// Run a relay in this process (embedded SQLite).
    Serve(commands::serve::Args),
    /// Run a self-contained demonstration in a temporary home.
    Demo(commands::demo::Args),
    /// Wearable samples: import, summaries, FHIR Observations.
    #[command(subcommand)]
    Wearables(commands::wearables::Command),
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
        Command::Export(args) => commands::export::run(cli.home, args),
        Command::List(args) => commands::list::run(cli.home, args),
        Command::History(args) => commands::history::run(cli.home, args),
        Command::Amend(args) => commands::amend::run(cli.home, args),
        Command::EnteredInError(args) => commands::amend::run_eie(cli.home, args),
        Command::Summary(args) => commands::list::run_summary(cli.home, args),
        Command::Whoami(args) => commands::init::run_whoami(cli.home, args),
        Command::Sync(args) => commands::sync::run(cli.home, args),
        Command::LinkDevice(args) => commands::sync::run_link(cli.home, args),
        Command::JoinDevice(args) => commands::sync::run_join(cli.home, args),
        Command::Invite(args) => commands::share::run_invite(cli.home, args),
        Command::Accept(args) => commands::share::run_accept(cli.home, args),
        Command::Approve(args) => commands::share::run_approve(cli.home, args),
        Command::Grants(args) => commands::share::run_grants(cli.home, args),
        Command::Revoke(args) => commands::share::run_revoke(cli.home, args),
        Command::RecoveryKey(args) => commands::share::run_recovery_key(cli.home, args),
        Command::Restore(args) => commands::share::run_restore(cli.home, args),
        Command::Audit(args) => commands::share::run_audit(cli.home, args),
        Command::Provider(command) => commands::provider::run(cli.home, command),
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Wearables(cmd) => commands::wearables::run(cli.home, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
