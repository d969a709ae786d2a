//! [`Env`]: the process environment behind a small trait, so reporter
//! selection and the state directory can be tested with a table instead of
//! the real environment.

/// Read access to environment variables.
pub trait Env {
    /// The value of `name`, or `None` when unset or not valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;

    /// The value of `name` when set and not empty.
    fn non_empty(&self, name: &str) -> Option<String> {
        self.var(name).filter(|value| !value.is_empty())
    }
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Any lookup function is an environment, e.g. a closure over a table.
impl<F> Env for F
where
    F: Fn(&str) -> Option<String>,
{
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// A fixed environment from `(name, value)` pairs (tests, examples).
impl Env for &[(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_string())
    }
}
