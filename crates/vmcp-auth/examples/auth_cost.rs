//! CPU cost of authenticating and authorizing one relayed call: JWT
//! verification (ES256, cached keys) and one Cedar decision, as the gateway
//! does per `tools/call` under `incomingAuth.oidc` + `authz.cedar`.
//!
//! `cargo run --release -p vmcp-auth --example auth_cost` (single thread;
//! prints the median of 7 rounds in µs per call).
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vmcp_auth::authz::{Operation, Policies, Target};
use vmcp_auth::jwt::{Expectations, verify};
use vmcp_auth::keys::KeySet;

const ROUNDS: usize = 7;
const CALLS: usize = 5_000;

fn main() {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let keys = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
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
    let jwt = measure(&|| verify(&token, &keys, &expect).is_ok());
    let principal = verify(&token, &keys, &expect).unwrap();
    let cedar = measure(&|| policies.allows(&principal, Operation::CallTool, &target));
    let both = measure(&|| {
        let principal = verify(&token, &keys, &expect).unwrap();
        policies.allows(&principal, Operation::CallTool, &target)
    });
    println!(
        "jwt_verify_es256_us={jwt:.1} cedar_decision_us={cedar:.1} per_call_total_us={both:.1} (median of {ROUNDS} rounds x {CALLS} calls)"
    );
}
