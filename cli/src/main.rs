//! `satchel`: the desktop command line for the patient-held record.
//!
//! - [`home`]: where a profile lives on disk and how it is unlocked.
//! - [`commands`]: one module per subcommand.
//! - [`output`]: tables for people, JSON for machines, progress on stderr,
//!   and errors that say what to do next.
//!
//! This file owns the command tree (every command's `--help` carries an
//! example), how errors are shown (one line, `error: ...`), and how a closed
//! stdout ends the process (quietly, see [`outln!`]).

/// `println!` that returns an error instead of panicking when stdout is
/// closed (`satchel list | head -1`).
///
/// Rust ignores SIGPIPE, so a write to a closed pipe fails with
/// `BrokenPipe`; `println!` turns that into a panic. Restoring the default
/// SIGPIPE disposition would need `unsafe` (forbidden in this workspace) or
/// a new dependency, and would also kill the process in the middle of a
/// write to the record. Instead every command writes through this macro and
/// `?`, and `main` ends quietly (exit 0, like `ripgrep`) when the error is a
/// broken pipe: the reader has what it wanted, and nothing is half-written
/// because stdout is the last thing a command touches.
macro_rules! outln {
    () => {
        outln!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod commands;
mod home;
mod output;
mod relay;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Satchel: your health record, encrypted on your device, shared on your terms.
#[derive(Debug, Parser)]
#[command(
    name = "satchel",
    version,
    about,
    after_help = "Example:\n  export SATCHEL_HOME=~/satchel\n  satchel init --name \"Ada Lovelace\"\n  satchel add discharge-summary.json\n  satchel list --section medications\n\nEvery command has its own help and example: satchel COMMAND --help"
)]
struct Cli {
    /// The profile directory (the record, keys and settings of one user).
    #[arg(long, env = "SATCHEL_HOME", global = true)]
    home: Option<PathBuf>,

    /// Trust only this CA (PEM) for relays' HTTPS certificates, instead of
    /// the system's trust store: for a relay whose certificate comes from
    /// its operator's own CA.
    #[arg(long, env = "SATCHEL_RELAY_CA", global = true, value_name = "FILE")]
    relay_ca: Option<PathBuf>,

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
    /// Name another relay a replica of the record (ciphertext only).
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel replica add https://relay.riverside-clinic.example --label \"Riverside clinic\" --server https://relay.example"
    )]
    Replica(commands::replica::Command),
    /// The relays the record syncs with, and moving it to another relay.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel relays add https://relay.example\n  satchel relays list\n  satchel relays move --to https://relay.new.example"
    )]
    Relays(commands::relays::Command),
    /// SMART Health Links for people without the app (a QR code to the summary).
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel share-link create --ips --expires 24h --passcode --label \"For Dr Okafor\"\n  satchel share-link list\n  satchel share-link revoke 3f2a91c0"
    )]
    ShareLink(commands::share_link::Command),
    /// A passcode-free link to allergies, medications, conditions, blood group
    /// and emergency contacts, for a wallet card or lock screen.
    EmergencyCard(commands::share_link::EmergencyArgs),
    /// Take access back (all, or some sections); rotates the keys.
    Revoke(commands::share::RevokeArgs),
    /// End every relay session of a member or device at once (owner device).
    EndSessions(commands::sessions::Args),
    /// Make a recovery key to write down.
    RecoveryKey(commands::share::RecoveryKeyArgs),
    /// Restore the record on a new device from the relay with a recovery key.
    Restore(commands::share::RestoreArgs),
    /// Who viewed and who contributed what, when (owner and managers).
    Audit(commands::share::AuditArgs),
    /// For provider systems: push FHIR into a record shared with this home.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel --home ~/gp provider push --server http://127.0.0.1:8787 --record 3f2a results.json"
    )]
    Provider(commands::provider::Command),
    /// Direct sync with members' devices on the local network, no relay.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel nearby discover\n  satchel nearby discover --timeout 10 --json"
    )]
    Nearby(commands::nearby::Command),
    /// Run a relay in this process (embedded SQLite).
    Serve(commands::serve::Args),
    /// Play the whole story (patient devices, GP and hospital, wearables,
    /// carer, consultant, revocation, audit) in separate homes against an
    /// embedded relay, verifying every step.
    Demo(commands::demo::Args),
    /// Wearable samples: import, summaries, FHIR Observations.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel wearables import ~/Downloads/apple_health_export/export.xml\n  satchel wearables summary --metric heart-rate --from 2024-01-01 --to 2024-01-31\n  satchel wearables observations --from 2024-01-01 --to 2024-01-07 > observations.json"
    )]
    Wearables(commands::wearables::Command),
}

fn main() -> ExitCode {
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        // Warnings and errors only; the platform certificate verifier logs
        // every refused certificate as an error, which the command's own
        // one-line error already says.
        let filter = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::WARN)
            .with_target(
                "rustls_platform_verifier",
                tracing_subscriber::filter::LevelFilter::OFF,
            );
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    if let Err(err) = relay::init(cli.relay_ca.as_deref()) {
        eprintln!("error: {}", output::one_line(&err));
        return ExitCode::FAILURE;
    }
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
        Command::Replica(command) => commands::replica::run(cli.home, command),
        Command::Relays(command) => commands::relays::run(cli.home, command),
        Command::ShareLink(command) => commands::share_link::run(cli.home, command),
        Command::EmergencyCard(args) => commands::share_link::run_emergency(cli.home, args),
        Command::EndSessions(args) => commands::sessions::run(cli.home, args),
        Command::RecoveryKey(args) => commands::share::run_recovery_key(cli.home, args),
        Command::Restore(args) => commands::share::run_restore(cli.home, args),
        Command::Audit(args) => commands::share::run_audit(cli.home, args),
        Command::Provider(command) => commands::provider::run(cli.home, command),
        Command::Nearby(command) => commands::nearby::run(cli.home, command),
        Command::Serve(args) => commands::serve::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Wearables(cmd) => commands::wearables::run(cli.home, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output closed it early (`| head`): not an error.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", output::one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// Show a command-line parse error on one line (what was wrong, clap's tip,
/// and which `--help` to read), or print the help/version clap was asked for.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
    if !err.use_stderr() || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // --help, --version, or a bare `satchel wearables`: the help is the answer.
        let _ = err.print();
        return code;
    }
    let text = err.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut message = lines
        .next()
        .unwrap_or("invalid command line")
        .trim_start_matches("error:")
        .trim()
        .to_string();
    let mut items = Vec::new();
    let mut tips = Vec::new();
    for line in lines.filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
    {
        if line.starts_with("tip:") {
            tips.push(line.to_string());
        } else {
            items.push(line.to_string());
        }
    }
    if !items.is_empty() {
        message = format!("{message} {}", items.join(", "));
    }
    for tip in tips {
        message = format!("{message} ({tip})");
    }
    eprintln!("error: {message}; see `{} --help`", command_path());
    code
}

/// The (sub)command the command line names, e.g. `satchel wearables summary`.
fn command_path() -> String {
    use clap::CommandFactory;
    let mut path = vec!["satchel".to_string()];
    let mut command = Cli::command();
    for arg in std::env::args().skip(1) {
        let Some(sub) = command.find_subcommand(&arg).cloned() else {
            continue;
        };
        path.push(sub.get_name().to_string());
        command = sub;
    }
    path.join(" ")
}
