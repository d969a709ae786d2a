//! The issuer's signing keys, as read from its JWKS: only public keys for
//! signatures are kept (a symmetric `oct` key or an encryption key in the
//! set is never used to verify a token).

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable verification key.
#[derive(Clone)]
pub struct IssuerKey {
    /// The key's `kid`, when it has one.
    pub kid: Option<String>,
    /// The algorithm the key is restricted to (`alg`), when it says.
    pub algorithm: Option<Algorithm>,
    /// What verifies signatures.
    pub key: DecodingKey,
}

/// The usable keys of one JWKS.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<IssuerKey>,
}

impl KeySet {
    /// The signature keys of a JWKS document (`{"keys": [...]}`); keys that
    /// do not parse (an algorithm this build does not know), encryption and
    /// symmetric keys are left out.
    pub fn from_json(document: &serde_json::Value) -> Self {
        let jwks: Vec<Jwk> = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| serde_json::from_value(key.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Self::from_jwks(&JwkSet { keys: jwks })
    }

    /// The signature keys of `set`; others are left out.
    pub fn from_jwks(set: &JwkSet) -> Self {
        let keys = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature)
            })
            .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(jwk).ok()?;
                let algorithm = match jwk.common.key_algorithm {
                    None => None,
                    Some(alg) => Some(signature_algorithm(alg)?),
                };
                Some(IssuerKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                })
            })
            .collect();
        Self { keys }
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    /// The key for a token with this `kid` (or, without one, the only key
    /// that could verify `algorithm`).
    pub fn select(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&IssuerKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None => {
                let mut fitting = self.keys.iter().filter(|key| {
                    key.key.family() == algorithm.family()
                        && key.algorithm.is_none_or(|alg| alg == algorithm)
                });
                let only = fitting.next()?;
                fitting.next().is_none().then_some(only)
            }
        }
    }
}

/// The signing algorithm a JWK's `alg` names (`None` for encryption ones).
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
