//! Pod-template merging and the containment check, as tables.

use serde_json::json;
use vmcp_operator::merge::{contains, merge};

#[test]
fn merge_table() {
    // (base, overlay, expected)
    let table = [
        (
            json!({"a": 1, "b": {"c": 2}}),
            json!({"b": {"d": 3}}),
            json!({"a": 1, "b": {"c": 2, "d": 3}}),
        ),
        (json!({"a": 1}), json!({"a": null}), json!({})),
        (json!({"l": [1, 2]}), json!({"l": [3]}), json!({"l": [3]})),
        (
            json!({"c": [{"name": "vmcp", "image": "a", "env": [{"name": "X", "value": "1"}]}]}),
            json!({"c": [{"name": "vmcp", "env": [{"name": "Y", "value": "2"}]}, {"name": "side", "image": "s"}]}),
            json!({"c": [{"name": "vmcp", "image": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}, {"name": "side", "image": "s"}]}),
        ),
        (
            json!({"c": [{"name": "vmcp", "image": "a"}]}),
            json!({"c": [{"name": "vmcp", "image": "b"}]}),
            json!({"c": [{"name": "vmcp", "image": "b"}]}),
        ),
    ];
    for (mut base, overlay, expected) in table {
        let before = base.clone();
        merge(&mut base, &overlay);
        assert_eq!(base, expected, "{before} + {overlay}");
    }
}

#[test]
fn contains_table() {
    let desired = json!({
        "metadata": {"labels": {"app": "vmcp"}},
        "spec": {"containers": [{"name": "vmcp", "args": ["serve"], "ports": [{"name": "http", "containerPort": 4483}]}]},
    });
    // (current, contains desired?)
    let table = [
        (desired.clone(), true),
        // Defaults and other managers' fields do not matter.
        (
            json!({
                "metadata": {"labels": {"app": "vmcp", "injected": "yes"}, "resourceVersion": "7"},
                "spec": {"containers": [
                    {"name": "vmcp", "args": ["serve"], "ports": [{"name": "http", "containerPort": 4483, "protocol": "TCP"}], "terminationMessagePath": "/dev/termination-log"},
                    {"name": "istio-proxy", "image": "proxy"},
                ]},
            }),
            true,
        ),
        // An edited field, a missing item, a changed scalar list do.
        (
            json!({"metadata": {"labels": {"app": "other"}}, "spec": desired["spec"].clone()}),
            false,
        ),
        (
            json!({"metadata": {"labels": {"app": "vmcp"}}, "spec": {"containers": []}}),
            false,
        ),
        (
            json!({"metadata": {"labels": {"app": "vmcp"}}, "spec": {"containers": [{"name": "vmcp", "args": ["serve", "--x"], "ports": [{"name": "http", "containerPort": 4483}]}]}}),
            false,
        ),
        (json!({"metadata": {}}), false),
    ];
    for (current, want) in table {
        assert_eq!(contains(&current, &desired), want, "{current}");
    }
}
