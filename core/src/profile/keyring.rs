//! The device's section keys by (section, epoch): how they are sealed at
//! rest under the master key ([`seal_keyring`], [`load_keyring`]) and how a
//! device learns them from the verified access log ([`learn`], a pure
//! function of the log and the device's identity).

use std::collections::BTreeMap;

use crate::crypto::{unwrap_key, wrap_key, Identity, IdentityCard, SectionKey, SymmetricKey};
use crate::ids::RecordId;
use crate::record::Section;
use crate::sharing::{
    chain_aad, key_wrap_aad, AccessChange, AccessStatement, KeyWrap, Members, SignedStatement,
};
use crate::store::Store;

use super::vault::Vault;
use super::{legacy_section_key_meta, ProfileError, Result, META_KEYRING};

/// The current key of each of `sections` (per the verified log's epochs),
/// wrapped to `card`. A section without its current key here is
/// [`ProfileError::NoKey`].
pub(crate) fn wrap_current(
    keys: &Keyring,
    members: &Members,
    card: &IdentityCard,
    sections: &[Section],
) -> Result<Vec<KeyWrap>> {
    let mut out = Vec::with_capacity(sections.len());
    for section in sections {
        let name = section.as_str();
        let epoch = members.epoch(name);
        let key = keys
            .get(&(*section, epoch))
            .ok_or(ProfileError::NoKey(name))?;
        out.push(KeyWrap {
            section: name.to_string(),
            epoch,
            to: card.id(),
            key: wrap_key(
                card,
                key.expose(),
                &key_wrap_aad(&members.record, name, epoch, &card.id()),
            )?,
        });
    }
    Ok(out)
}

/// A device's section keys by (section, epoch).
pub(crate) type Keyring = BTreeMap<(Section, u32), SectionKey>;

/// Seal the keyring under the master key.
pub(crate) fn seal_keyring(vault: &Vault, keys: &Keyring) -> Result<Vec<u8>> {
    use base64::Engine;
    let map: BTreeMap<String, String> = keys
        .iter()
        .map(|((s, e), k)| {
            (
                format!("{}/{e}", s.as_str()),
                base64::engine::general_purpose::STANDARD.encode(k.expose()),
            )
        })
        .collect();
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(&map).map_err(|_| ProfileError::Corrupt("keyring"))?,
    );
    vault.seal(META_KEYRING, &json)
}

/// Parse `"section/epoch"`.
pub(crate) fn parse_key_name(name: &str) -> Option<(Section, u32)> {
    let (s, e) = name.split_once('/')?;
    Some((s.parse().ok()?, e.parse().ok()?))
}

/// Load the keyring (or, from a profile made before key epochs, every
/// section's epoch-0 key).
pub(crate) fn load_keyring<S: Store>(store: &S, vault: &Vault) -> Result<Keyring> {
    use base64::Engine;
    let mut keys = Keyring::new();
    if store.get_meta(META_KEYRING)?.is_none() {
        for section in Section::ALL {
            let what = legacy_section_key_meta(section);
            let bytes = vault.open_meta(store, &what, "section key")?;
            let key =
                SectionKey::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("section key"))?;
            keys.insert((section, 0), key);
        }
        return Ok(keys);
    }
    let json = vault.open_meta(store, META_KEYRING, "keyring")?;
    let mut map: BTreeMap<String, String> =
        serde_json::from_slice(&json).map_err(|_| ProfileError::Corrupt("keyring"))?;
    for (name, value) in &mut map {
        let id = parse_key_name(name).ok_or(ProfileError::Corrupt("keyring"))?;
        let bytes = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .map_err(|_| ProfileError::Corrupt("keyring"))?,
        );
        zeroize::Zeroize::zeroize(value);
        keys.insert(
            id,
            SectionKey::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("keyring"))?,
        );
    }
    Ok(keys)
}

/// Unwrap every key wrapped to this device that `keys` lacks, then
/// walk each section's key chain back to epoch 0. Returns how many
/// keys were added. Wraps that fail to open are skipped (a wrap to this
/// identity that does not open is the wrapper's fault, never fatal).
pub(crate) fn learn(
    keys: &mut Keyring,
    identity: &Identity,
    record: RecordId,
    log: &[SignedStatement],
) -> usize {
    let me = identity.id();
    let start = keys.len();
    let mut chains: BTreeMap<(Section, u32), Vec<u8>> = BTreeMap::new();
    let mut wraps: Vec<KeyWrap> = Vec::new();
    for signed in log {
        let Ok(statement) = serde_json::from_slice::<AccessStatement>(&signed.statement) else {
            continue;
        };
        match statement.change {
            AccessChange::AddDevice { keys: w, .. } | AccessChange::AddRecovery { keys: w, .. } => {
                wraps.extend(w)
            }
            // A replica relay is given no key; retiring a relay moves none.
            AccessChange::AddReplica { .. } | AccessChange::RetireRelay { .. } => {}
            // A narrowed grant rotates what it takes away, as a revocation
            // does: both carry rotations to learn.
            AccessChange::Grant {
                keys: w, rotations, ..
            } => {
                wraps.extend(w);
                for r in rotations {
                    if let Ok(section) = r.section.parse::<Section>() {
                        chains.insert((section, r.epoch), r.chain);
                    }
                    wraps.extend(r.keys);
                }
            }
            AccessChange::Revoke { rotations, .. } => {
                for r in rotations {
                    if let Ok(section) = r.section.parse::<Section>() {
                        chains.insert((section, r.epoch), r.chain);
                    }
                    wraps.extend(r.keys);
                }
            }
        }
    }
    for w in wraps.iter().filter(|w| w.to == me) {
        let Ok(section) = w.section.parse::<Section>() else {
            continue;
        };
        if keys.contains_key(&(section, w.epoch)) {
            continue;
        }
        let aad = key_wrap_aad(&record, &w.section, w.epoch, &me);
        if let Ok(bytes) = unwrap_key(identity, &w.key, &aad) {
            if let Ok(key) = SectionKey::from_slice(&bytes) {
                keys.insert((section, w.epoch), key);
            }
        }
    }
    // Older epochs from newer ones.
    for section in Section::ALL {
        let mut epoch = keys
            .keys()
            .filter(|(s, _)| *s == section)
            .map(|(_, e)| *e)
            .max();
        while let Some(e) = epoch.filter(|e| *e > 0) {
            if !keys.contains_key(&(section, e - 1)) {
                let (Some(key), Some(chain)) = (keys.get(&(section, e)), chains.get(&(section, e)))
                else {
                    break;
                };
                let Ok(old) = SymmetricKey::from_slice(key.expose())
                    .and_then(|k| k.open(&chain_aad(&record, section.as_str(), e), chain))
                else {
                    break;
                };
                let Ok(old) = SectionKey::from_slice(&old) else {
                    break;
                };
                keys.insert((section, e - 1), old);
            }
            epoch = Some(e - 1);
        }
    }
    keys.len() - start
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::{wrap_key, Role};
    use crate::sharing::{GrantRole, Rotation};

    fn signed(record: RecordId, by: &Identity, change: AccessChange) -> SignedStatement {
        AccessStatement {
            record_id: record,
            by: by.id(),
            at_ms: 1,
            prev: [0; 32],
            change,
        }
        .sign(by)
        .unwrap()
    }

    fn wrap(
        record: RecordId,
        section: Section,
        epoch: u32,
        key: &SectionKey,
        to: &Identity,
    ) -> KeyWrap {
        KeyWrap {
            section: section.as_str().into(),
            epoch,
            to: to.id(),
            key: wrap_key(
                to.card(),
                key.expose(),
                &key_wrap_aad(&record, section.as_str(), epoch, &to.id()),
            )
            .unwrap(),
        }
    }

    /// Keys wrapped to this device are learned, older epochs follow from
    /// the chain of a rotation, keys wrapped to others and wraps that do
    /// not open are skipped, and learning again adds nothing.
    #[test]
    fn learns_own_wraps_and_walks_chains_back() {
        let record = RecordId::random();
        let owner = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        let me = Identity::generate("carer", Role::Carer, None).unwrap();
        let other = Identity::generate("other", Role::Carer, None).unwrap();
        let labs0 = SectionKey::generate().unwrap();
        let labs1 = SectionKey::generate().unwrap();
        let vitals0 = SectionKey::generate().unwrap();
        let mut bad = wrap(record, Section::Vitals, 0, &vitals0, &me);
        bad.epoch = 7; // the AAD no longer matches: does not open
        let grant = signed(
            record,
            &owner,
            AccessChange::Grant {
                grantee: me.card().clone(),
                role: GrantRole::Reader,
                sections: vec!["labs".into(), "vitals".into()],
                expires_at_ms: None,
                label: String::new(),
                keys: vec![wrap(record, Section::Vitals, 0, &vitals0, &other), bad],
                rotations: Vec::new(),
            },
        );
        let chain = SymmetricKey::from_slice(labs1.expose())
            .unwrap()
            .seal(&chain_aad(&record, "labs", 1), labs0.expose())
            .unwrap();
        let revoke = signed(
            record,
            &owner,
            AccessChange::Revoke {
                identity: other.id(),
                sections: None,
                rotations: vec![Rotation {
                    section: "labs".into(),
                    epoch: 1,
                    chain,
                    keys: vec![wrap(record, Section::Labs, 1, &labs1, &me)],
                }],
            },
        );
        let log = vec![grant, revoke];
        let mut keys = Keyring::new();
        assert_eq!(learn(&mut keys, &me, record, &log), 2);
        assert_eq!(keys[&(Section::Labs, 1)].expose(), labs1.expose());
        assert_eq!(keys[&(Section::Labs, 0)].expose(), labs0.expose());
        assert!(!keys.contains_key(&(Section::Vitals, 0)));
        assert_eq!(learn(&mut keys, &me, record, &log), 0);
        // Another identity learns nothing from wraps that are not its own.
        let mut theirs = Keyring::new();
        assert_eq!(learn(&mut theirs, &owner, record, &log), 0);
    }
}
