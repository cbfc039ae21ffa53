//! Where a profile lives (`--home DIR`, file `satchel.db` inside) and how it
//! is unlocked: `SATCHEL_PASSPHRASE` when set, otherwise a prompt. Errors
//! here say which home and what to run next.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use satchel_core::crypto::Role;
use satchel_core::home::HomeLayout;
use satchel_core::ids::RecordId;
use satchel_core::profile::{IdentityVault, MemberInfo, Profile, ProfileError, Unlock};
use satchel_core::store::SqliteStore;
use zeroize::Zeroizing;

pub type HomeProfile = Profile<SqliteStore>;

pub fn require_home(home: Option<PathBuf>) -> Result<PathBuf> {
    match home {
        Some(h) => Ok(h),
        None => bail!("no home directory: pass --home DIR or set SATCHEL_HOME"),
    }
}

pub fn db_path(home: &Path) -> PathBuf {
    HomeLayout::new(home).own_db()
}

/// The passphrase from `SATCHEL_PASSPHRASE`, else from the terminal.
pub fn passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("SATCHEL_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    let first =
        Zeroizing::new(rpassword::prompt_password("Passphrase: ").context(
            "could not read a passphrase (set SATCHEL_PASSPHRASE when not on a terminal)",
        )?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ")?);
        if again != first {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    Ok(first)
}

/// The identity store of a home without a record of its own (a carer's or
/// a provider's): the one layout of `satchel_core::home`.
pub fn identity_path(home: &Path) -> PathBuf {
    HomeLayout::new(home).identity_db()
}

/// The store of a record shared with this home's identity.
pub fn shared_path(home: &Path, record: &RecordId) -> PathBuf {
    HomeLayout::new(home).shared_db(record)
}

/// A profile error from opening a store, with a wrong passphrase said plainly
/// (and what to do about it).
fn open_error(err: ProfileError) -> anyhow::Error {
    match err {
        ProfileError::WrongKey => anyhow::anyhow!(
            "wrong passphrase: it does not unlock this home; nothing was changed (check SATCHEL_PASSPHRASE, or type the passphrase again)"
        ),
        other => anyhow::Error::new(other),
    }
}

/// Open the record store at `path` with `pass`.
fn open_profile(path: &Path, pass: &str) -> Result<HomeProfile> {
    let store = SqliteStore::open(path)
        .with_context(|| format!("cannot open {} (is it a Satchel home?)", path.display()))?;
    Profile::open(store, unlock(pass)).map_err(open_error)
}

fn unlock(pass: &str) -> Unlock<'_> {
    Unlock::Passphrase {
        passphrase: pass.as_bytes(),
        params: None,
    }
}

/// Every record in `home`: its own (if any) first, then the records shared
/// with it, unlocked with one passphrase.
pub fn open_all(home: Option<PathBuf>) -> Result<Vec<HomeProfile>> {
    let home = require_home(home)?;
    let own = db_path(&home);
    let shared = shared_records(&home)?;
    if !own.exists() && shared.is_empty() {
        if identity_path(&home).exists() {
            bail!(
                "no record is shared with this home yet (after the owner approves your invite, run `satchel sync`)"
            );
        }
        bail!(
            "no Satchel profile in {} (run `satchel --home {} init --name NAME`, or `satchel accept CODE` for an invite)",
            home.display(),
            home.display()
        );
    }
    let pass = passphrase(false)?;
    let mut out = Vec::new();
    if own.exists() {
        out.push(open_profile(&own, &pass)?);
    }
    for path in shared {
        out.push(open_profile(&path, &pass)?);
    }
    Ok(out)
}

/// The shared-record stores in `home`, sorted.
pub fn shared_records(home: &Path) -> Result<Vec<PathBuf>> {
    let layout = HomeLayout::new(home);
    Ok(layout
        .shared_records()
        .with_context(|| format!("cannot list the shared records in {}", home.display()))?
        .iter()
        .map(|id| layout.shared_db(id))
        .collect())
}

/// Open the one record a command works on: `record` when given, else the
/// home's own record, else its only shared record.
pub fn open_record(home: Option<PathBuf>, record: Option<&str>) -> Result<HomeProfile> {
    let mut all = open_all(home)?;
    if let Some(r) = record {
        let r = record_prefix(r)?;
        let matching: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].record_id().to_hex().starts_with(r))
            .collect();
        return match matching[..] {
            [i] => Ok(all.swap_remove(i)),
            [] => bail!("no record {r} in this home (see `satchel list`)"),
            _ => bail!("{r} is the start of several records' ids; give more of it"),
        };
    }
    if all.len() > 1 && !all[0].is_owner_device() {
        bail!("this home holds several records; choose one with --record RECORD_ID");
    }
    Ok(all.swap_remove(0))
}

/// A `--record` argument: a record id in its one canonical form (32
/// lower-case hex characters, `RecordId`'s own parse) or its first 8 or
/// more characters. Nothing else (upper case, spaces, shorter starts) is
/// read as a record.
fn record_prefix(arg: &str) -> Result<&str> {
    let hex = arg
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok = if arg.len() == RecordId::LEN * 2 {
        arg.parse::<RecordId>().is_ok()
    } else {
        hex && (8..RecordId::LEN * 2).contains(&arg.len())
    };
    if !ok {
        bail!(
            "--record takes a record id: 32 lower-case hex characters, or its first 8 or more (see `satchel list`)"
        );
    }
    Ok(arg)
}

/// Open the profile in `home` (its own record, or its only shared one).
pub fn open(home: Option<PathBuf>) -> Result<HomeProfile> {
    open_record(home, None)
}

/// Open (or, with `create`, make) the identity of a home without a record.
pub fn open_identity(
    home: &Path,
    create: Option<(&str, Role, Option<&str>)>,
) -> Result<IdentityVault<SqliteStore>> {
    let path = identity_path(home);
    if path.exists() {
        let pass = passphrase(false)?;
        return IdentityVault::open(SqliteStore::open(&path)?, unlock(&pass)).map_err(open_error);
    }
    let Some((name, role, org)) = create else {
        bail!("this home has no identity yet (accept an invite with `satchel accept CODE --name NAME`)");
    };
    let pass = passphrase(true)?;
    if pass.is_empty() {
        bail!("the passphrase is empty; choose one (nothing was created)");
    }
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    Ok(IdentityVault::create(
        SqliteStore::open(&path)?,
        unlock(&pass),
        name,
        role,
        org,
    )?)
}

/// Create the store for a record shared with this home's identity.
pub fn create_shared(
    home: &Path,
    vault: &mut IdentityVault<SqliteStore>,
    info: MemberInfo,
    code_text: &str,
) -> Result<HomeProfile> {
    let path = shared_path(home, &info.record_id);
    if path.exists() {
        let pass = passphrase(false)?;
        let profile = open_profile(&path, &pass)?;
        vault.forget_pending_accept(code_text)?;
        return Ok(profile);
    }
    std::fs::create_dir_all(home.join(HomeLayout::SHARED_DIR))?;
    let pass = passphrase(false)?;
    Ok(vault.join_approved(SqliteStore::open(&path)?, unlock(&pass), info, code_text)?)
}

#[cfg(test)]
mod tests {
    use super::record_prefix;

    #[test]
    fn record_arguments_are_canonical() {
        let rid = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
        assert!(record_prefix(rid).is_ok());
        assert!(record_prefix(&rid[..8]).is_ok());
        for bad in [
            "",
            "f0f1f2",
            &rid.to_ascii_uppercase(),
            &format!(" {rid}"),
            &format!("{rid}\n"),
            &format!("{rid}00"),
            "0xf0f1f2f3f4",
            "f0f1 f2f3f4f5",
        ] {
            assert!(record_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
