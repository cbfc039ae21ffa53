//! `satchel end-sessions`: an owner device ends every relay session of a
//! member or device at once (all relay instances refuse its tokens within
//! a second). Kept apart from `revoke`, which takes access back.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use satchel_core::ids::IdentityId;
use satchel_core::sync::sharing as net;
use satchel_core::sync::RelayUrl;

use crate::{home, output};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  satchel end-sessions --server http://127.0.0.1:8787 --identity 9c41...e2 (64 hex characters; see `satchel grants`)\n\nThe member can log in again while it has access: use `satchel revoke` to take access back."
)]
pub struct Args {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// The member's or device's identity id (64 hex characters).
    #[arg(long)]
    pub identity: String,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.is_owner_device() {
        bail!("only an owner device of the record may end sessions (run this in the owner's home)");
    }
    let identity: IdentityId = args
        .identity
        .trim()
        .parse()
        .ok()
        .context("--identity must be a full identity id (64 hex characters)")?;
    let mut client = crate::relay::client(&args.server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = rt
        .block_on(net::end_sessions(&mut client, &mut profile, identity))
        .map_err(|e| output::relay_error(&args.server, "could not end the sessions", e))?;
    outln!(
        "Ended {ended} session(s) of {} on the relay.",
        identity.short()
    );
    Ok(())
}
