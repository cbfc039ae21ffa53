//! [`ClientRegistry`] and [`RegisteredClient`]: the backend clients this
//! gateway knows, each with its public JWK Set and the most scopes it may be
//! granted; kept in a JSON file written atomically with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{quote, AuthError};
use super::jwks::{check_jwks, ClientKey};
use super::scopes::Scopes;

/// Longest client id accepted.
const MAX_CLIENT_ID_LEN: usize = 255;

/// A backend client (an integration engine) registered with the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredClient {
    /// The id the client puts in its assertions' `iss` and `sub`.
    pub client_id: String,
    /// Its public keys, a JWK Set (`{"keys":[...]}`).
    pub jwks: serde_json::Value,
    /// The most it may be granted (`"scope"` in the file).
    #[serde(rename = "scope")]
    pub scopes: Scopes,
}

/// The registry file's shape.
#[derive(Serialize, Deserialize)]
struct RegistryFile {
    clients: Vec<RegisteredClient>,
}

/// The registered backend clients, with their keys checked and ready.
#[derive(Default, Clone)]
pub struct ClientRegistry {
    clients: Vec<RegisteredClient>,
    /// `keys[i]` are the verified keys of `clients[i]`.
    keys: Vec<Vec<ClientKey>>,
}

impl std::fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl ClientRegistry {
    /// Reads the registry file; a missing file is a registry with no
    /// clients. Every client is checked as by [`ClientRegistry::add`].
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AuthError::RegistryIo {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let file: RegistryFile =
            serde_json::from_slice(&bytes).map_err(|e| AuthError::RegistryFormat {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
        let mut registry = Self::default();
        for client in file.clients {
            registry.add(client)?;
        }
        Ok(registry)
    }

    /// Writes the registry file atomically (a temporary file in the same
    /// folder, then a rename), readable by the owner only on unix.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let io = |source| AuthError::RegistryIo {
            path: path.to_owned(),
            source,
        };
        let file = RegistryFile {
            clients: self.clients.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| io(e.into()))?;
        json.push(b'\n');
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let (temp_path, mut temp) = tempfile_in(dir).map_err(io)?;
        let written = temp
            .write_all(&json)
            .and_then(|()| temp.sync_all())
            .and_then(|()| {
                drop(temp);
                fs::rename(&temp_path, path)
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp_path);
            return Err(io(e));
        }
        // Make the rename itself durable (best effort: not every platform
        // can open a folder).
        if let Ok(folder) = fs::File::open(dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }

    /// Registers a client after checking its id and JWK Set: every key RSA
    /// (2048 bits or more) or EC P-384, with a unique `kid`, public only.
    pub fn add(&mut self, client: RegisteredClient) -> Result<(), AuthError> {
        let id = &client.client_id;
        if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN || id.chars().any(char::is_control) {
            return Err(AuthError::InvalidClientId(quote(id)));
        }
        if self.find(id).is_some() {
            return Err(AuthError::DuplicateClient(id.clone()));
        }
        let keys = check_jwks(&client.jwks).map_err(|detail| AuthError::InvalidJwks {
            client_id: id.clone(),
            detail,
        })?;
        self.clients.push(client);
        self.keys.push(keys);
        Ok(())
    }

    /// Removes a client; whether it was registered.
    pub fn remove(&mut self, client_id: &str) -> bool {
        match self.clients.iter().position(|c| c.client_id == client_id) {
            Some(i) => {
                self.clients.remove(i);
                self.keys.remove(i);
                true
            }
            None => false,
        }
    }

    /// The registered clients.
    pub fn clients(&self) -> &[RegisteredClient] {
        &self.clients
    }

    /// A client and its verified keys.
    pub(crate) fn find(&self, client_id: &str) -> Option<(&RegisteredClient, &[ClientKey])> {
        let i = self.clients.iter().position(|c| c.client_id == client_id)?;
        Some((&self.clients[i], self.keys.get(i)?.as_slice()))
    }
}

/// A new, empty file in `dir` with a unique name, mode 0600 on unix.
fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, fs::File)> {
    let mut name = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name)
        .map_err(|_| std::io::Error::other("no system randomness for a temporary file name"))?;
    let path = dir.join(format!(".clients.{}.tmp", hex::encode(name)));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{client, es384_key, rs384_key};
    use super::*;

    #[test]
    fn registry_save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        let (ec, rsa) = (es384_key("ec-1"), rs384_key("rsa-1"));
        let mut registry = ClientRegistry::default();
        registry
            .add(client(
                "hospital",
                &[&ec, &rsa],
                "system/*.read system/Observation.write",
            ))
            .unwrap();
        registry
            .add(client("gp", &[&es384_key("k")], "system/Patient.rs"))
            .unwrap();
        registry.save(&path).unwrap();

        let loaded = ClientRegistry::load(&path).unwrap();
        assert_eq!(loaded.clients(), registry.clients());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"scope\": \"system/*.read system/Observation.write\""));
        assert!(loaded
            .find("hospital")
            .is_some_and(|(_, keys)| keys.len() == 2));
    }

    #[cfg(unix)]
    #[test]
    fn registry_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        ClientRegistry::default().save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn missing_registry_file_means_no_clients() {
        let dir = tempfile::tempdir().unwrap();
        let registry = ClientRegistry::load(&dir.path().join("absent.json")).unwrap();
        assert!(registry.clients().is_empty());
    }

    #[test]
    fn registry_file_that_is_not_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        fs::write(&path, "{\"clients\": 3}").unwrap();
        let err = ClientRegistry::load(&path).unwrap_err();
        assert!(matches!(err, AuthError::RegistryFormat { .. }), "{err}");
    }

    #[test]
    fn private_key_material_is_refused() {
        let mut key = es384_key("k").jwk;
        key["d"] = json!("c2VjcmV0");
        let mut registry = ClientRegistry::default();
        let err = registry
            .add(RegisteredClient {
                client_id: "hospital".into(),
                jwks: json!({ "keys": [key] }),
                scopes: Scopes::parse("system/*.read").unwrap(),
            })
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("private key material"), "{message}");
        assert!(
            !message.contains("c2VjcmV0"),
            "the message must not echo the key"
        );
        assert!(registry.clients().is_empty());
    }

    #[test]
    fn key_without_kid_is_refused() {
        let mut key = es384_key("k").jwk;
        key.as_object_mut().unwrap().remove("kid");
        let err = check_jwks(&json!({ "keys": [key] })).err().unwrap();
        assert!(err.contains("no kid"), "{err}");
    }

    #[test]
    fn rsa_key_under_2048_bits_is_refused() {
        let mut key = rs384_key("k").jwk;
        key["n"] = json!(base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            [0xc5u8; 128]
        ));
        let err = check_jwks(&json!({ "keys": [key] })).err().unwrap();
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[test]
    fn ec_key_not_on_p384_is_refused() {
        let mut key = es384_key("k").jwk;
        key["crv"] = json!("P-256");
        let err = check_jwks(&json!({ "keys": [key] })).err().unwrap();
        assert!(err.contains("P-384"), "{err}");
    }

    #[test]
    fn symmetric_key_is_refused() {
        let key = json!({ "kty": "oct", "kid": "k", "k": "c2VjcmV0" });
        assert!(check_jwks(&json!({ "keys": [key] })).is_err());
    }

    #[test]
    fn key_declared_for_another_alg_is_refused() {
        let mut key = rs384_key("k").jwk;
        key["alg"] = json!("RS256");
        let err = check_jwks(&json!({ "keys": [key] })).err().unwrap();
        assert!(err.contains("\"alg\" must be RS384"), "{err}");
    }

    #[test]
    fn duplicate_client_id_is_refused() {
        let mut registry = ClientRegistry::default();
        let key = es384_key("k");
        registry
            .add(client("hospital", &[&key], "system/*.read"))
            .unwrap();
        let err = registry
            .add(client("hospital", &[&key], "system/*.read"))
            .unwrap_err();
        assert!(matches!(err, AuthError::DuplicateClient(_)));
    }

    #[test]
    fn removed_client_is_gone() {
        let mut registry = ClientRegistry::default();
        registry
            .add(client("hospital", &[&es384_key("k")], "system/*.read"))
            .unwrap();
        assert!(registry.remove("hospital"));
        assert!(!registry.remove("hospital"));
        assert!(registry.find("hospital").is_none());
    }
}
