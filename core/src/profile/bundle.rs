//! What an owner device hands a new device of the same patient: the record
//! id, the owner's name, the record's creator device and every section key.
//! It only ever travels wrapped to the new device's key (HPKE).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{Profile, ProfileError, Result};
use crate::crypto::SectionKey;
use crate::ids::{IdentityId, RecordId};
use crate::record::Section;
use crate::store::Store;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The keys and facts a joining device needs. Zeroized on drop.
#[derive(Serialize, Deserialize)]
pub struct DeviceBundle {
    pub record_id: RecordId,
    pub owner_name: String,
    pub creator: IdentityId,
    /// The creator device's card (older bundles lack it).
    #[serde(default)]
    pub creator_card: Option<crate::crypto::IdentityCard>,
    /// `section/epoch` → base64 key.
    section_keys: BTreeMap<String, String>,
}

impl Drop for DeviceBundle {
    fn drop(&mut self) {
        self.owner_name.zeroize();
        for value in self.section_keys.values_mut() {
            value.zeroize();
        }
    }
}

impl std::fmt::Debug for DeviceBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBundle")
            .field("record_id", &self.record_id)
            .finish_non_exhaustive()
    }
}

impl DeviceBundle {
    /// Every key in the bundle, by (section, epoch). Names are
    /// `section/epoch`, or a bare section name for epoch 0.
    pub(super) fn section_keys(&self) -> Result<super::Keyring> {
        let mut keys = super::Keyring::new();
        for (name, encoded) in &self.section_keys {
            let id = super::parse_key_name(name)
                .or_else(|| name.parse::<Section>().ok().map(|s| (s, 0)))
                .ok_or(ProfileError::Corrupt("device bundle"))?;
            let bytes = zeroize::Zeroizing::new(
                B64.decode(encoded)
                    .map_err(|_| ProfileError::Corrupt("device bundle"))?,
            );
            keys.insert(
                id,
                SectionKey::from_slice(&bytes)
                    .map_err(|_| ProfileError::Corrupt("device bundle"))?,
            );
        }
        if Section::ALL.iter().any(|s| !keys.contains_key(&(*s, 0))) {
            return Err(ProfileError::Corrupt(
                "device bundle: a section key is missing",
            ));
        }
        Ok(keys)
    }

    /// Serialised form (to be wrapped; never stored or sent in the clear).
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        serde_json::to_vec(self)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| ProfileError::Corrupt("device bundle"))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|_| ProfileError::Corrupt("device bundle"))
    }
}

impl<S: Store> Profile<S> {
    /// The bundle for a new device of this record's owner.
    pub fn device_bundle(&self) -> DeviceBundle {
        DeviceBundle {
            record_id: self.record.id,
            owner_name: self.owner_name.clone(),
            creator: self.access.creator,
            creator_card: self.access.creator_card.clone(),
            section_keys: self
                .keys
                .iter()
                .map(|((s, e), k)| (format!("{}/{e}", s.as_str()), B64.encode(k.expose())))
                .collect(),
        }
    }
}
