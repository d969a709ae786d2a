//! `deploy/kustomization.yaml` and the operator's Deployment: every
//! resource exists, images are pinned, the runtime image is the binary's
//! default, and the operator's health endpoint is the one its probes use.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vmcp_operator::settings::DEFAULT_RUNTIME_IMAGE;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn load(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(relative)).expect("readable");
    serde_saphyr::from_multiple(&text).expect("YAML")
}

#[test]
fn the_kustomization_installs_crds_operator_rbac_and_deployment() {
    let kustomization = &load("kustomization.yaml")[0];
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut kinds = Vec::new();
    for resource in &resources {
        assert!(deploy_dir().join(resource).is_file(), "{resource} exists");
        kinds.extend(
            load(resource)
                .iter()
                .filter_map(|d| d["kind"].as_str().map(str::to_string)),
        );
    }
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {resources:?}"
        );
    }
    let crds = std::fs::read_dir(deploy_dir().join("crds"))
        .expect("deploy/crds")
        .count();
    assert_eq!(
        resources.iter().filter(|r| r.starts_with("crds/")).count(),
        crds,
        "every CRD"
    );
}

#[test]
fn images_are_pinned_and_the_runtime_image_is_the_default() {
    let deployment = &load("operator/deployment.yaml")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let image = container["image"].as_str().expect("image");
    assert!(
        !image.ends_with(":latest") && image.contains(':'),
        "{image} is pinned"
    );
    let runtime = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "VMCP_RUNTIME_IMAGE")
        .and_then(|e| e["value"].as_str())
        .expect("VMCP_RUNTIME_IMAGE");
    assert_eq!(runtime, DEFAULT_RUNTIME_IMAGE);
    assert!(!DEFAULT_RUNTIME_IMAGE.ends_with(":latest"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--health-addr", "0.0.0.0:8081"]),
        "{args:?}"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "vmcp-operator"
    );
}
