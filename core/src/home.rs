//! A home: the folder where a device keeps its records. One layout for
//! every front end (the CLI's `--home DIR`, the mobile app's data
//! directory):
//!
//! ```text
//! <home>/satchel.db             the record this home owns (if any)
//! <home>/identity.db            the identity of a home without a record of
//!                               its own (a carer's, a provider's)
//! <home>/shared/<record>.db     each record shared with that identity
//! ```
//!
//! Only paths and listing live here: unlocking is the profile's
//! ([`crate::profile`]), prompting and keystores are the front end's.

use std::path::{Path, PathBuf};

use crate::ids::RecordId;

/// The files of one home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeLayout {
    dir: PathBuf,
}

impl HomeLayout {
    /// The record this home owns.
    pub const OWN_DB: &'static str = "satchel.db";
    /// The identity of a home without a record of its own.
    pub const IDENTITY_DB: &'static str = "identity.db";
    /// The folder of records shared with this home's identity.
    pub const SHARED_DIR: &'static str = "shared";

    /// The layout of the home in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HomeLayout { dir: dir.into() }
    }

    /// The home's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store of the record this home owns.
    pub fn own_db(&self) -> PathBuf {
        self.dir.join(Self::OWN_DB)
    }

    /// The identity store of a home without a record of its own.
    pub fn identity_db(&self) -> PathBuf {
        self.dir.join(Self::IDENTITY_DB)
    }

    /// The store of a record shared with this home.
    pub fn shared_db(&self, record: &RecordId) -> PathBuf {
        self.dir.join(Self::SHARED_DIR).join(format!("{record}.db"))
    }

    /// The records shared with this home, sorted. Files in `shared/` whose
    /// names are not `<record id>.db` are not records and are left out.
    pub fn shared_records(&self) -> std::io::Result<Vec<RecordId>> {
        let dir = self.dir.join(Self::SHARED_DIR);
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        for item in std::fs::read_dir(&dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".db").and_then(|s| s.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Remove a half-made store and its SQLite side files (a failed create
    /// or restore leaves nothing behind). Files already gone are fine.
    pub fn remove_store(path: &Path) -> std::io::Result<()> {
        for p in [
            path.to_path_buf(),
            PathBuf::from(format!("{}-wal", path.display())),
            PathBuf::from(format!("{}-shm", path.display())),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let home = HomeLayout::new(dir.path());
        assert_eq!(home.own_db(), dir.path().join("satchel.db"));
        assert_eq!(home.identity_db(), dir.path().join("identity.db"));
        assert!(home.shared_records().unwrap().is_empty());
        let (a, b) = (RecordId::random(), RecordId::random());
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        for id in [&a, &b] {
            std::fs::write(home.shared_db(id), b"").unwrap();
        }
        std::fs::write(dir.path().join("shared/notes.db"), b"").unwrap();
        std::fs::write(dir.path().join(format!("shared/{a}.db-wal")), b"").unwrap();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(home.shared_records().unwrap(), want);
        HomeLayout::remove_store(&home.shared_db(&a)).unwrap();
        assert!(!dir.path().join(format!("shared/{a}.db-wal")).exists());
        assert_eq!(home.shared_records().unwrap(), vec![b]);
        HomeLayout::remove_store(&home.shared_db(&a)).unwrap();
    }
}
