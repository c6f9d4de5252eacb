//! Step keys: a step id and the branch indexes of the fan-outs enclosing it, outermost
//! first. Rendered `id` outside any fan-out and `id@3` / `id@3.5` inside (the form records
//! are stored under); parsing gives back the same key, and nothing else builds or splits that
//! text by hand.

use std::fmt;
use std::str::FromStr;

/// Where one step runs: its id and its fan-out scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepKey {
    pub step: String,
    /// Branch indexes of the enclosing fan-outs, outermost first (empty outside any).
    pub scope: Vec<u32>,
}

impl StepKey {
    pub fn new(step: impl Into<String>, scope: &[u32]) -> Self {
        StepKey { step: step.into(), scope: scope.to_vec() }
    }

    /// A step outside any fan-out.
    pub fn top(step: impl Into<String>) -> Self {
        StepKey { step: step.into(), scope: Vec::new() }
    }

    /// Another step in the same scope.
    pub fn sibling(&self, step: impl Into<String>) -> Self {
        StepKey { step: step.into(), scope: self.scope.clone() }
    }

    /// The innermost branch index and the scope of the fan-out that branch belongs to.
    pub fn innermost(&self) -> Option<(u32, &[u32])> {
        self.scope.split_last().map(|(index, outer)| (*index, outer))
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.step)?;
        for (n, index) in self.scope.iter().enumerate() {
            f.write_str(if n == 0 { "@" } else { "." })?;
            write!(f, "{index}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{0}` is not a step key (`id`, or `id@` and dot-separated branch indexes)")]
pub struct BadStepKey(pub String);

impl FromStr for StepKey {
    type Err = BadStepKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadStepKey(text.to_string());
        let (step, scope) = match text.split_once('@') {
            None => (text, Vec::new()),
            Some((step, indexes)) => {
                let scope =
                    indexes.split('.').map(|i| i.parse::<u32>().map_err(|_| bad())).collect::<Result<_, _>>()?;
                (step, scope)
            }
        };
        if step.is_empty() {
            return Err(bad());
        }
        Ok(StepKey { step: step.to_string(), scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_render_and_parse_back() {
        for (key, text) in [
            (StepKey::top("a"), "a"),
            (StepKey::new("leaf", &[3]), "leaf@3"),
            (StepKey::new("leaf", &[3, 5]), "leaf@3.5"),
        ] {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<StepKey>(), Ok(key));
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for text in ["", "@1", "a@", "a@x", "a@1.", "a@-1", "a@1@2"] {
            assert!(text.parse::<StepKey>().is_err(), "{text}");
        }
    }

    #[test]
    fn the_innermost_branch_names_its_fan_out_scope() {
        assert_eq!(StepKey::new("s", &[1, 2]).innermost(), Some((2, &[1u32][..])));
        assert_eq!(StepKey::top("s").innermost(), None);
    }
}
