//! Evaluation of a Conditional step's `when`.
//!
//! Invariant: evaluation is pure and total over the condition tree: `all` and bare lists need
//! every member (empty → true), `any` needs one (empty → false); each comparison renders its
//! `left`/`right` with [`crate::template`] and either answers or fails with a
//! [`ConditionError`] naming the operator and the offending value: a comparison never
//! silently turns a type mismatch into `false` (except where documented below, e.g.
//! `is_true` of a non-boolean).

pub mod time;

use regex::Regex;
use serde_json::Value;

use crate::model::{Comparison, Condition, Operator};
use crate::template::{self, TemplateError, kind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("`{}`: {message}", op_name(*op))]
    Operator { op: Operator, message: String },
}

/// Whether `cond` holds for the execution context `ctx`.
pub fn evaluate(cond: &Condition, ctx: &Value) -> Result<bool, ConditionError> {
    match cond {
        Condition::All { all: members } | Condition::List(members) => {
            for member in members {
                if !evaluate(member, ctx)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Any { any: members } => {
            for member in members {
                if evaluate(member, ctx)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Compare(comparison) => compare(comparison, ctx),
    }
}

/// The operator as written in workflow files.
pub fn op_name(op: Operator) -> &'static str {
    match op {
        Operator::Equals => "equals",
        Operator::NotEquals => "not_equals",
        Operator::GreaterThan => "greater_than",
        Operator::GreaterOrEqual => "greater_or_equal",
        Operator::LessThan => "less_than",
        Operator::LessOrEqual => "less_or_equal",
        Operator::Contains => "contains",
        Operator::NotContains => "not_contains",
        Operator::StartsWith => "starts_with",
        Operator::EndsWith => "ends_with",
        Operator::IsIn => "is_in",
        Operator::NotIn => "not_in",
        Operator::Exists => "exists",
        Operator::NotExists => "not_exists",
        Operator::IsNull => "is_null",
        Operator::IsNotNull => "is_not_null",
        Operator::IsEmpty => "is_empty",
        Operator::IsNotEmpty => "is_not_empty",
        Operator::IsTrue => "is_true",
        Operator::IsFalse => "is_false",
        Operator::Matches => "matches",
        Operator::Before => "before",
        Operator::After => "after",
        Operator::SameTime => "same_time",
    }
}

/// Every operator, in the order of the workflow-format documentation.
pub const ALL_OPERATORS: [Operator; 24] = [
    Operator::Equals,
    Operator::NotEquals,
    Operator::GreaterThan,
    Operator::GreaterOrEqual,
    Operator::LessThan,
    Operator::LessOrEqual,
    Operator::Contains,
    Operator::NotContains,
    Operator::StartsWith,
    Operator::EndsWith,
    Operator::IsIn,
    Operator::NotIn,
    Operator::Exists,
    Operator::NotExists,
    Operator::IsNull,
    Operator::IsNotNull,
    Operator::IsEmpty,
    Operator::IsNotEmpty,
    Operator::IsTrue,
    Operator::IsFalse,
    Operator::Matches,
    Operator::Before,
    Operator::After,
    Operator::SameTime,
];

/// The operator written as `name`, if there is one.
pub fn parse_op(name: &str) -> Option<Operator> {
    ALL_OPERATORS.into_iter().find(|op| op_name(*op) == name)
}

/// Whether the operator looks at `left` only (no `right`).
pub fn is_unary(op: Operator) -> bool {
    matches!(
        op,
        Operator::Exists
            | Operator::NotExists
            | Operator::IsNull
            | Operator::IsNotNull
            | Operator::IsEmpty
            | Operator::IsNotEmpty
            | Operator::IsTrue
            | Operator::IsFalse
    )
}

fn compare(comparison: &Comparison, ctx: &Value) -> Result<bool, ConditionError> {
    let op = comparison.op;
    match op {
        Operator::Exists => return Ok(template::render_optional(&comparison.left, ctx)?.is_some()),
        Operator::NotExists => {
            return Ok(template::render_optional(&comparison.left, ctx)?.is_none());
        }
        _ => {}
    }
    let left = template::render(&comparison.left, ctx)?;
    if is_unary(op) {
        return Ok(unary(op, &left));
    }
    // `right: null` deserializes as `None` (serde cannot tell it from a missing key); the
    // loader rejects a truly missing `right`, so `None` here means null.
    let right = match &comparison.right {
        Some(right) => template::render(right, ctx)?,
        None => Value::Null,
    };
    binary(op, &left, &right)
}

fn unary(op: Operator, left: &Value) -> bool {
    match op {
        Operator::IsNull => left.is_null(),
        Operator::IsNotNull => !left.is_null(),
        Operator::IsEmpty => is_empty(left),
        Operator::IsNotEmpty => !is_empty(left),
        Operator::IsTrue => as_bool(left) == Some(true),
        Operator::IsFalse => as_bool(left) == Some(false),
        // `exists`/`not_exists` are answered before rendering; binary operators never get here.
        _ => false,
    }
}

fn binary(op: Operator, left: &Value, right: &Value) -> Result<bool, ConditionError> {
    Ok(match op {
        Operator::Equals => loose_eq(left, right),
        Operator::NotEquals => !loose_eq(left, right),
        Operator::GreaterThan => number(op, left)? > number(op, right)?,
        Operator::GreaterOrEqual => number(op, left)? >= number(op, right)?,
        Operator::LessThan => number(op, left)? < number(op, right)?,
        Operator::LessOrEqual => number(op, left)? <= number(op, right)?,
        Operator::Contains => contains(op, left, right)?,
        Operator::NotContains => !contains(op, left, right)?,
        Operator::StartsWith => text(op, left)?.starts_with(&text(op, right)?),
        Operator::EndsWith => text(op, left)?.ends_with(&text(op, right)?),
        Operator::IsIn => is_in(op, left, right)?,
        Operator::NotIn => !is_in(op, left, right)?,
        Operator::Matches => matches_regex(op, left, right)?,
        Operator::Before => timestamp(op, left)? < timestamp(op, right)?,
        Operator::After => timestamp(op, left)? > timestamp(op, right)?,
        Operator::SameTime => timestamp(op, left)? == timestamp(op, right)?,
        Operator::Exists
        | Operator::NotExists
        | Operator::IsNull
        | Operator::IsNotNull
        | Operator::IsEmpty
        | Operator::IsNotEmpty
        | Operator::IsTrue
        | Operator::IsFalse => unary(op, left),
    })
}

/// `equals` semantics: numbers compare numerically (1 == 1.0), a string against a number or
/// boolean compares as text ("200" == 200, "true" == true; a numeric string is also compared
/// numerically, so "1.0" == 1), otherwise JSON equality (numbers inside compared numerically).
pub fn loose_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::String(s), other @ (Value::Number(_) | Value::Bool(_)))
        | (other @ (Value::Number(_) | Value::Bool(_)), Value::String(s)) => {
            let other_text = other.to_string();
            if *s == other_text {
                return true;
            }
            match (other.as_f64(), s.trim().parse::<f64>()) {
                (Some(n), Ok(parsed)) => n == parsed,
                _ => false,
            }
        }
        _ => json_eq(left, right),
    }
}

/// Structural equality where numbers compare by value.
fn json_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => left == right,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A boolean, or the strings `true`/`false` (any case, surrounding spaces ignored).
fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn fail(op: Operator, message: String) -> ConditionError {
    ConditionError::Operator { op, message }
}

/// A short rendering of a value for error messages.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn number(op: Operator, value: &Value) -> Result<f64, ConditionError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    };
    parsed.ok_or_else(|| fail(op, format!("compares numbers, but got {} {}", kind(value), show(value))))
}

/// The string form of a scalar: strings raw, numbers and booleans as written.
fn text(op: Operator, value: &Value) -> Result<String, ConditionError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(value.to_string()),
        _ => Err(fail(op, format!("compares text, but got {} {}", kind(value), show(value)))),
    }
}

fn contains(op: Operator, left: &Value, right: &Value) -> Result<bool, ConditionError> {
    match left {
        Value::String(haystack) => Ok(haystack.contains(&text(op, right)?)),
        Value::Array(items) => Ok(items.iter().any(|item| loose_eq(item, right))),
        Value::Object(map) => Ok(map.contains_key(&text(op, right)?)),
        other => Err(fail(
            op,
            format!("needs a string, array or object on the left, but got {} {}", kind(other), show(other)),
        )),
    }
}

fn is_in(op: Operator, left: &Value, right: &Value) -> Result<bool, ConditionError> {
    match right {
        Value::Array(items) => Ok(items.iter().any(|item| loose_eq(left, item))),
        Value::String(haystack) => Ok(haystack.contains(&text(op, left)?)),
        other => {
            Err(fail(op, format!("needs an array or a string on the right, but got {} {}", kind(other), show(other))))
        }
    }
}

fn matches_regex(op: Operator, left: &Value, right: &Value) -> Result<bool, ConditionError> {
    let Value::String(pattern) = right else {
        return Err(fail(op, format!("needs a regular expression (a string) on the right, but got {}", kind(right))));
    };
    let regex = compile_regex(pattern).map_err(|e| fail(op, e))?;
    Ok(regex.is_match(&text(op, left)?))
}

/// Compiles a `matches` pattern; the error is one line naming the pattern.
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let full = e.to_string();
        let reason = full
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error:"))
            .map_or_else(|| full.split_whitespace().collect::<Vec<_>>().join(" "), |r| r.trim().to_string());
        format!("`{pattern}` is not a valid regular expression: {reason}")
    })
}

fn timestamp(op: Operator, value: &Value) -> Result<chrono::DateTime<chrono::Utc>, ConditionError> {
    time::parse_timestamp(value).ok_or_else(|| {
        fail(
            op,
            format!(
                "compares timestamps (ISO 8601 such as 2026-11-23T10:00:00Z, a date, or epoch seconds/milliseconds), but got {}",
                show(value)
            ),
        )
    })
}

#[cfg(test)]
mod tests;
