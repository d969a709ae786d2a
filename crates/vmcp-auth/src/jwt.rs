//! JWT verification against the issuer's keys (pure: no I/O).
//!
//! Only asymmetric signature algorithms are accepted (never `none`, never an
//! HMAC algorithm, which would let a public key serve as the secret); the
//! key must match the token's `kid` and, when it names one, its algorithm.
//! `iss`, `aud`, `exp` and `sub` are required; `exp` and `nbf` get a small
//! allowance for clock skew.

use std::str::FromStr;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::keys::KeySet;
use crate::principal::Principal;
use crate::rejection::Rejection;

/// Longest token accepted (Keycloak's with many groups stay well below).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const CLOCK_SKEW_SECONDS: u64 = 30;

/// The signing algorithms accepted.
pub const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What a token must say.
#[derive(Clone, Debug)]
pub struct Expectations {
    /// The exact `iss`.
    pub issuer: String,
    /// Accepted `aud` values (the audience, and the resource indicator).
    pub audiences: Vec<String>,
}

/// Whether `token` has the shape of a JWS (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let shaped = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    shaped(parts.next()) && shaped(parts.next()) && shaped(parts.next()) && parts.next().is_none()
}

/// The `alg` and `kid` of a token's header, with `alg` checked against the
/// allow-list before anything else is read.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), Rejection> {
    if token.len() > MAX_TOKEN_BYTES || !looks_like_jwt(token) {
        return Err(Rejection::Malformed);
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Rejection::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Malformed)?;
    let algorithm = Algorithm::from_str(alg)
        .ok()
        .filter(|algorithm| ALLOWED_ALGORITHMS.contains(algorithm))
        .ok_or(Rejection::Algorithm)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Rejection::Malformed),
    };
    Ok((algorithm, kid))
}

/// Verifies `token` with `keys` and returns the caller it names.
pub fn verify(token: &str, keys: &KeySet, expect: &Expectations) -> Result<Principal, Rejection> {
    let (algorithm, kid) = header(token)?;
    verify_parsed(token, algorithm, kid.as_deref(), keys, expect)
}

/// [`verify`] for a token whose [`header`] was already read.
pub fn verify_parsed(
    token: &str,
    algorithm: Algorithm,
    kid: Option<&str>,
    keys: &KeySet,
    expect: &Expectations,
) -> Result<Principal, Rejection> {
    let key = keys.select(kid, algorithm).ok_or(Rejection::UnknownKey)?;
    if key.algorithm.is_some_and(|alg| alg != algorithm) || key.key.family() != algorithm.family() {
        return Err(Rejection::Algorithm);
    }
    let mut validation = Validation::new(algorithm);
    validation.leeway = CLOCK_SKEW_SECONDS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[&expect.issuer]);
    validation.set_audience(&expect.audiences);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
        .map_err(|err| classify(err.kind()))?;
    Principal::from_claims(data.claims).ok_or(Rejection::MissingClaim)
}

fn classify(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            Rejection::MissingClaim
        }
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example/realms/vmcp";

    struct Signer {
        key: EncodingKey,
        kid: String,
    }

    impl Signer {
        fn new(kid: &str) -> Self {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .expect("key generation");
            Self {
                key: EncodingKey::from_ec_der(pkcs8.as_ref()),
                kid: kid.into(),
            }
        }

        fn jwk(&self) -> Jwk {
            let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::ES256).expect("public jwk");
            jwk.common.key_id = Some(self.kid.clone());
            jwk
        }

        fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.key).expect("signing")
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": ["vmcp", "account"], "sub": "alice", "exp": now() + 300,
               "iat": now(), "groups": ["eng"]})
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: ISSUER.into(),
            audiences: vec!["vmcp".into(), "https://gw.example/mcp".into()],
        }
    }

    fn keys(signers: &[&Signer]) -> KeySet {
        KeySet::from_jwks(&JwkSet {
            keys: signers.iter().map(|s| s.jwk()).collect(),
        })
    }

    fn with(patch: Value) -> Value {
        let mut claims = claims();
        for (key, value) in patch.as_object().expect("patch") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    }

    fn b64(value: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn a_good_token_names_its_caller() {
        let signer = Signer::new("k1");
        let principal =
            verify(&signer.sign(&claims()), &keys(&[&signer]), &expect()).expect("valid");
        assert_eq!(&*principal.subject, "alice");
        assert_eq!(principal.groups, ["eng"]);
    }

    #[test]
    fn every_broken_claim_is_refused_for_its_own_reason() {
        let signer = Signer::new("k1");
        let keys = keys(&[&signer]);
        let cases = [
            (with(json!({"exp": now() - 31})), Rejection::Expired),
            (with(json!({"nbf": now() + 31})), Rejection::NotYetValid),
            (
                with(json!({"iss": "https://other.example"})),
                Rejection::Issuer,
            ),
            (with(json!({"aud": "someone-else"})), Rejection::Audience),
            (with(json!({"aud": null})), Rejection::MissingClaim),
            (with(json!({"sub": null})), Rejection::MissingClaim),
            (with(json!({"exp": null})), Rejection::MissingClaim),
            (with(json!({"iss": null})), Rejection::MissingClaim),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                verify(&signer.sign(&claims), &keys, &expect()).err(),
                Some(expected.clone()),
                "{claims}"
            );
        }
        // Within the clock-skew allowance.
        assert!(
            verify(
                &signer.sign(&with(json!({"exp": now() - 5}))),
                &keys,
                &expect()
            )
            .is_ok()
        );
        assert!(
            verify(
                &signer.sign(&with(json!({"aud": "https://gw.example/mcp"}))),
                &keys,
                &expect()
            )
            .is_ok()
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let signer = Signer::new("k1");
        let other = Signer::new("k1");
        let keys = keys(&[&signer]);
        // Same kid, another key.
        assert_eq!(
            verify(&other.sign(&claims()), &keys, &expect()).err(),
            Some(Rejection::Signature)
        );
        // Tampered payload.
        let token = signer.sign(&claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = b64(&with(json!({"sub": "mallory"})));
        assert_eq!(
            verify(&parts.join("."), &keys, &expect()).err(),
            Some(Rejection::Signature)
        );
        // alg none, with and without a signature.
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "k1"})),
            b64(&claims())
        );
        assert_eq!(
            verify(&none, &keys, &expect()).err(),
            Some(Rejection::Malformed)
        );
        let none = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "none", "kid": "k1"})),
            b64(&claims())
        );
        assert_eq!(
            verify(&none, &keys, &expect()).err(),
            Some(Rejection::Algorithm)
        );
        // HMAC keyed with the public key (the classic confusion attack).
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let public = serde_json::to_vec(&signer.jwk()).expect("jwk json");
        let hmac = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&public).expect("hmac key"),
        )
        .expect("hmac");
        assert_eq!(
            verify(&hmac, &keys, &expect()).err(),
            Some(Rejection::Algorithm)
        );
        // Unknown kid; garbage.
        let stranger = Signer::new("k2");
        assert_eq!(
            verify(&stranger.sign(&claims()), &keys, &expect()).err(),
            Some(Rejection::UnknownKey)
        );
        assert_eq!(
            verify("not-a-jwt", &keys, &expect()).err(),
            Some(Rejection::Malformed)
        );
        let huge = format!(
            "{}.{}.c2ln",
            b64(&json!({"alg": "ES256"})),
            "a".repeat(MAX_TOKEN_BYTES)
        );
        assert_eq!(
            verify(&huge, &keys, &expect()).err(),
            Some(Rejection::Malformed)
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_in_a_jwks_are_never_used() {
        let document = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "s", "alg": "HS256"},
            {"kty": "RSA", "use": "enc", "kid": "e", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB"},
            {"kty": "weird", "kid": "w"}
        ]});
        assert!(KeySet::from_json(&document).is_empty());
        let signer = Signer::new("k1");
        let mut document = json!({"keys": [signer.jwk()]});
        document["keys"]
            .as_array_mut()
            .expect("keys")
            .push(json!({"kty": "weird"}));
        let set = KeySet::from_json(&document);
        assert_eq!(set.len(), 1);
        assert!(verify(&signer.sign(&claims()), &set, &expect()).is_ok());
    }

    #[test]
    fn a_token_without_kid_uses_the_only_fitting_key() {
        let signer = Signer::new("k1");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(), &signer.key)
            .expect("sign");
        assert!(verify(&token, &keys(&[&signer]), &expect()).is_ok());
        let second = Signer::new("k2");
        assert_eq!(
            verify(&token, &keys(&[&signer, &second]), &expect()).err(),
            Some(Rejection::UnknownKey)
        );
    }
}
