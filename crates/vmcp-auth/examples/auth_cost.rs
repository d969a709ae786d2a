//! CPU cost of authenticating and authorizing one relayed call under
//! `incomingAuth.oidc` + `authz.cedar`: the first request with a token
//! (signature check with cached keys, ES256 and RS256, and a Cedar decision
//! on a new principal) and every later one (the verified-token cache
//! lookup and a decision on the principal's prebuilt entity).
//!
//! `cargo run --release -p vmcp-auth --example auth_cost` (single thread;
//! prints the median of 7 rounds in µs per call).
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::Arc;
use vmcp_auth::authz::{Operation, Policies, Target};
use vmcp_auth::jwt::{Expectations, verify};
use vmcp_auth::keys::KeySet;
use vmcp_auth::verified_cache::VerifiedTokens;

const ROUNDS: usize = 7;
const CALLS: usize = 5_000;

fn main() {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let rsa_key = EncodingKey::from_rsa_der(pkcs1(rsa.as_der().unwrap().as_ref()));
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa_key, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("r1".into());
    let keys = KeySet::from_jwks(&JwkSet {
        keys: vec![jwk, rsa_jwk],
    });
    let now = jsonwebtoken::get_current_timestamp();
    // Claims shaped like Keycloak's access tokens in the e2e realm.
    let claims = json!({
        "iss": "http://127.0.0.1:8080/realms/vmcp", "aud": "vmcp-gateway", "sub": "2f6c2c4e-8a1e-4d7b-9c1a-3b5d7e9f0a11",
        "exp": now + 600, "iat": now, "jti": "onrtac:1b2c3d4e", "typ": "Bearer", "azp": "mcp-client",
        "sid": "8a7b6c5d", "scope": "profile email mcp:tools", "email_verified": true,
        "groups": ["engineering"], "preferred_username": "alice", "email": "alice@example.test",
        "realm_access": {"roles": ["default-roles-vmcp", "offline_access"]}
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("r1".into());
    let rsa_token = jsonwebtoken::encode(&header, &claims, &rsa_key).unwrap();
    let expect = Expectations {
        issuer: "http://127.0.0.1:8080/realms/vmcp".into(),
        audiences: vec!["vmcp-gateway".into()],
    };
    let policies = Policies::load(&[
        r#"permit(principal in THVGroup::"engineering", action, resource in MCP::"pyhttp");"#
            .into(),
        r#"permit(principal, action == Action::"call_tool", resource == Tool::"pysse_echo");"#
            .into(),
        r#"forbid(principal, action == Action::"call_tool", resource == Tool::"pyhttp_fail");"#
            .into(),
    ])
    .unwrap();
    let target = Target {
        name: "pyhttp_echo",
        backend: "pyhttp",
        hints: vec![("readOnlyHint", true)],
    };

    let measure = |f: &dyn Fn() -> bool| {
        let mut rounds: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..CALLS {
                    assert!(f());
                }
                start.elapsed().as_secs_f64() * 1e6 / CALLS as f64
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        rounds[ROUNDS / 2]
    };
    let es256 = measure(&|| verify(&token, &keys, &expect).is_ok());
    let rs256 = measure(&|| verify(&rsa_token, &keys, &expect).is_ok());
    let cedar_new = measure(&|| {
        let principal = verify(&token, &keys, &expect).unwrap();
        policies.allows(&principal, Operation::CallTool, &target)
    }) - es256;
    let cache = VerifiedTokens::default();
    cache.put(
        &token,
        &Arc::new(verify(&token, &keys, &expect).unwrap()),
        now,
    );
    let lookup = measure(&|| cache.get(&token).is_some());
    let principal = cache.get(&token).unwrap();
    let cedar = measure(&|| policies.allows(&principal, Operation::CallTool, &target));
    let later = measure(&|| {
        let principal = cache.get(&token).unwrap();
        policies.allows(&principal, Operation::CallTool, &target)
    });
    println!(
        "first request: es256_verify_us={es256:.1} rs256_verify_us={rs256:.1} cedar_new_principal_us={cedar_new:.1}"
    );
    println!(
        "later requests: cache_lookup_us={lookup:.1} cedar_decision_us={cedar:.1} per_call_total_us={later:.1} (median of {ROUNDS} rounds x {CALLS} calls)"
    );
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`: the content
/// of its third element, an OCTET STRING (the signer wants PKCS#1).
fn pkcs1(pkcs8: &[u8]) -> &[u8] {
    // (tag, content) of the DER element at the start of `der`, and the rest.
    fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (der[0], der[1]);
        let (len, skip) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let bytes = usize::from(first & 0x7f);
            let len = der[2..2 + bytes]
                .iter()
                .fold(0, |len, b| (len << 8) | usize::from(*b));
            (len, 2 + bytes)
        };
        (tag, &der[skip..skip + len], &der[skip + len..])
    }
    let (_, info, _) = element(pkcs8);
    let (_, _, rest) = element(info); // version
    let (_, _, rest) = element(rest); // algorithm
    let (tag, key, _) = element(rest);
    assert_eq!(tag, 0x04, "PKCS#8 holds its key in an OCTET STRING");
    key
}
