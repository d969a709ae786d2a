//! JSON merging and containment, the two tree operations the operator
//! needs: `spec.podTemplateSpec` merged over the generated pod template,
//! and "does the current object already hold everything we would apply?".

use serde_json::Value;

/// Merges `overlay` into `base`: objects key by key, lists whose items are
/// all objects with a `name` by that name (containers, env, volumes,
/// ports), anything else replaced by the overlay's value. A `null` in the
/// overlay removes the key.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) if named(base) && named(overlay) => {
            for item in overlay {
                let name = item.get("name");
                match base.iter_mut().find(|b| b.get("name") == name) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

fn named(items: &[Value]) -> bool {
    items
        .iter()
        .all(|item| item.get("name").is_some_and(Value::is_string))
}

/// Whether `current` holds every field of `desired` with the same value:
/// objects may have more keys (defaults, other managers' fields), lists of
/// named objects may have more items (an injected sidecar), other lists
/// must have the same length with each item contained.
pub fn contains(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (Value::Object(current), Value::Object(desired)) => desired
            .iter()
            .all(|(key, want)| current.get(key).is_some_and(|have| contains(have, want))),
        (Value::Array(current), Value::Array(desired)) if named(desired) => {
            desired.iter().all(|want| {
                current
                    .iter()
                    .find(|have| have.get("name") == want.get("name"))
                    .is_some_and(|have| contains(have, want))
            })
        }
        (Value::Array(current), Value::Array(desired)) => {
            current.len() == desired.len()
                && current
                    .iter()
                    .zip(desired)
                    .all(|(have, want)| contains(have, want))
        }
        (current, desired) => current == desired,
    }
}
