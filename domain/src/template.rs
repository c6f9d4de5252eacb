//! `{{ ... }}` dynamic variables.
//!
//! Invariant: rendering never invents data. A string that is exactly one `{{path}}` becomes
//! the referenced JSON value with its type; a string with text around expressions becomes a
//! string (strings inserted raw, other values as compact JSON); a path that does not exist is
//! a [`TemplateError::MissingPath`] naming the path and why, never an empty string. Object
//! keys are never templated.
//!
//! The context the engine passes has the shape
//! `{"trigger":{"query":{},"headers":{},"body":...},"steps":{"ID":{"output":...,"error":...}},
//! "settings":{},"env":{"NAME":"text"},"user":{"id":..},"execution":{"id":..},"workflow":{"id":..}}`.

mod parse;

use std::fmt;

use serde_json::{Map, Value};

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text does not follow the `{{ path }}` grammar.
    #[error("invalid template `{text}`: {message}")]
    Syntax { text: String, message: String },
    /// The path names something the context does not hold.
    #[error("`{path}` does not exist: {detail}")]
    MissingPath { path: String, detail: String },
}

/// One step of a path: an object key (an all-digit key also indexes arrays) or `[N]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `steps.lookup.output.body.items[0].id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathExpr {
    pub segments: Vec<Segment>,
}

impl PathExpr {
    /// Parses a path written without braces, e.g. `trigger.body.email`.
    pub fn parse(text: &str) -> Result<PathExpr, TemplateError> {
        parse::parse_path(text)
    }

    /// The first segment's name (`trigger`, `steps`, ...), if it is a key.
    pub fn root(&self) -> Option<&str> {
        self.key_at(0)
    }

    /// The segment at `index` if it is a key.
    pub fn key_at(&self, index: usize) -> Option<&str> {
        match self.segments.get(index) {
            Some(Segment::Key(key)) => Some(key),
            _ => None,
        }
    }

    /// The path made of the first `len` segments, as text.
    fn prefix_text(&self, len: usize) -> String {
        PathExpr { segments: self.segments[..len.min(self.segments.len())].to_vec() }.to_string()
    }
}

impl fmt::Display for PathExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One piece of a parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Expr(PathExpr),
}

/// A parsed template string: literal text and `{{ path }}` expressions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        parse::parse_template(text)
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Every `{{ path }}` of the template, in order.
    pub fn expressions(&self) -> impl Iterator<Item = &PathExpr> {
        self.parts.iter().filter_map(|part| match part {
            Part::Expr(path) => Some(path),
            Part::Text(_) => None,
        })
    }

    /// The expression when the whole string is exactly one `{{ path }}` (no text around it).
    pub fn as_single_expr(&self) -> Option<&PathExpr> {
        match self.parts.as_slice() {
            [Part::Expr(path)] => Some(path),
            _ => None,
        }
    }

    /// Renders against `ctx`: a single expression keeps its JSON type, anything else is text.
    pub fn render(&self, ctx: &Value) -> Result<Value, TemplateError> {
        if let Some(path) = self.as_single_expr() {
            return resolve(ctx, path).cloned();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(path) => match resolve(ctx, path)? {
                    Value::String(text) => out.push_str(text),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

/// Renders every string inside `value` (arrays and object values, not object keys).
pub fn render(value: &Value, ctx: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(text) => render_str(text, ctx),
        Value::Array(items) => items.iter().map(|item| render(item, ctx)).collect::<Result<_, _>>().map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| Ok((key.clone(), render(item, ctx)?)))
            .collect::<Result<Map<String, Value>, TemplateError>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// Like [`render`], but a string that is exactly one expression whose path does not exist
/// gives `Ok(None)` instead of an error (the `left` of `exists` / `not_exists`).
pub fn render_optional(value: &Value, ctx: &Value) -> Result<Option<Value>, TemplateError> {
    if let Value::String(text) = value
        && text.contains("{{")
    {
        let template = Template::parse(text)?;
        if let Some(path) = template.as_single_expr() {
            return Ok(lookup(ctx, path).cloned());
        }
        return template.render(ctx).map(Some);
    }
    render(value, ctx).map(Some)
}

fn render_str(text: &str, ctx: &Value) -> Result<Value, TemplateError> {
    if !text.contains("{{") {
        return Ok(Value::String(text.to_string()));
    }
    Template::parse(text)?.render(ctx)
}

/// The value at `path` inside `ctx`, if there is one.
pub fn lookup<'a>(ctx: &'a Value, path: &PathExpr) -> Option<&'a Value> {
    resolve(ctx, path).ok()
}

/// The value at `path`, or a [`TemplateError::MissingPath`] saying where the walk stopped.
pub fn resolve<'a>(ctx: &'a Value, path: &PathExpr) -> Result<&'a Value, TemplateError> {
    let mut current = ctx;
    for (depth, segment) in path.segments.iter().enumerate() {
        current = step_into(current, segment).map_err(|why| {
            let detail = if depth == 0 {
                match segment {
                    Segment::Key(key) => format!("there is no variable `{key}`"),
                    Segment::Index(index) => format!("there is no variable `[{index}]`"),
                }
            } else {
                format!("`{}` {why}", path.prefix_text(depth))
            };
            TemplateError::MissingPath { path: path.to_string(), detail }
        })?;
    }
    Ok(current)
}

/// One segment down from `value`; the error completes "`<prefix>` ...".
fn step_into<'a>(value: &'a Value, segment: &Segment) -> Result<&'a Value, String> {
    match (value, segment) {
        (Value::Object(map), Segment::Key(key)) => map.get(key).ok_or_else(|| format!("has no key `{key}`")),
        (Value::Array(items), Segment::Index(index)) => index_into(items, *index),
        (Value::Array(items), Segment::Key(key)) if is_digits(key) => match key.parse::<usize>() {
            Ok(index) => index_into(items, index),
            Err(_) => Err(format!("{}, index {key} is out of range", describe_array(items))),
        },
        (other, Segment::Key(key)) if is_digits(key) => Err(format!("is {}, not an object or array", kind(other))),
        (other, Segment::Key(_)) => Err(format!("is {}, not an object", kind(other))),
        (other, Segment::Index(_)) => Err(format!("is {}, not an array", kind(other))),
    }
}

fn index_into(items: &[Value], index: usize) -> Result<&Value, String> {
    items.get(index).ok_or_else(|| format!("{}, index {index} is out of range", describe_array(items)))
}

fn describe_array(items: &[Value]) -> String {
    match items.len() {
        0 => "is an empty array".to_string(),
        1 => "is an array of 1 item".to_string(),
        n => format!("is an array of {n} items"),
    }
}

fn is_digits(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit())
}

/// "a string", "an object", ... for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({
            "trigger": {"query": {"source": "crm"}, "headers": {"x-source": "crm"}, "body": {"email": "a@b.c", "age": 42}},
            "steps": {
                "lookup": {"output": {"status": 200, "body": {"id": 7, "items": [{"id": "x"}, {"id": "y"}, {"id": "z"}], "tag": null}}},
                "list": {"output": ["first", "second"]},
                "map": {"output": {"0": "zero"}}
            },
            "settings": {"api_key": "k"},
            "user": {"id": "u1"}
        })
    }

    fn path(text: &str) -> PathExpr {
        PathExpr::parse(text).expect("valid path")
    }

    #[test]
    fn single_expression_keeps_the_json_type() {
        let ctx = ctx();
        assert_eq!(render(&json!("{{steps.lookup.output.status}}"), &ctx), Ok(json!(200)));
        assert_eq!(render(&json!("{{ steps.lookup.output.body.items }}"), &ctx).map(|v| v.is_array()), Ok(true));
        assert_eq!(render(&json!("{{steps.lookup.output.body.tag}}"), &ctx), Ok(Value::Null));
    }

    #[test]
    fn text_around_expressions_makes_a_string_with_compact_json_for_non_strings() {
        let ctx = ctx();
        assert_eq!(render(&json!("Bearer {{settings.api_key}}"), &ctx), Ok(json!("Bearer k")));
        assert_eq!(
            render(&json!("{{trigger.body.age}}/{{steps.lookup.output.body.tag}}/{{steps.list.output}}"), &ctx),
            Ok(json!("42/null/[\"first\",\"second\"]"))
        );
    }

    #[test]
    fn arrays_and_object_values_are_rendered_but_keys_are_not() {
        let value = json!({"{{user.id}}": ["{{user.id}}", 1, true, null, {"n": "{{trigger.body.age}}"}]});
        assert_eq!(render(&value, &ctx()), Ok(json!({"{{user.id}}": ["u1", 1, true, null, {"n": 42}]})));
    }

    #[test]
    fn strings_without_braces_are_returned_unchanged() {
        assert_eq!(render(&json!("plain } text"), &ctx()), Ok(json!("plain } text")));
    }

    #[test]
    fn array_indexes_work_as_brackets_and_as_digit_segments() {
        let ctx = ctx();
        assert_eq!(render(&json!("{{steps.lookup.output.body.items[1].id}}"), &ctx), Ok(json!("y")));
        assert_eq!(render(&json!("{{steps.lookup.output.body.items.2.id}}"), &ctx), Ok(json!("z")));
        assert_eq!(render(&json!("{{steps.list.output.0}}"), &ctx), Ok(json!("first")));
        assert_eq!(render(&json!("{{steps.map.output.0}}"), &ctx), Ok(json!("zero")));
        assert_eq!(render(&json!("{{trigger.headers.x-source}}"), &ctx), Ok(json!("crm")));
    }

    #[test]
    fn missing_key_names_the_path_and_the_last_existing_parent() {
        let err = render(&json!("{{steps.lookup.output.body.nope}}"), &ctx()).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "`steps.lookup.output.body.nope` does not exist: `steps.lookup.output.body` has no key `nope`"
        );
    }

    #[test]
    fn out_of_range_index_says_how_long_the_array_is() {
        let err = render(&json!("id: {{steps.lookup.output.body.items[5].id}}"), &ctx()).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "`steps.lookup.output.body.items[5].id` does not exist: `steps.lookup.output.body.items` is an array of 3 items, index 5 is out of range"
        );
    }

    #[test]
    fn walking_into_a_scalar_says_what_it_is() {
        let ctx = ctx();
        let err = render(&json!("{{trigger.body.email.domain}}"), &ctx).expect_err("scalar");
        assert!(err.to_string().ends_with("`trigger.body.email` is a string, not an object"), "{err}");
        let err = render(&json!("{{trigger.body.age[0]}}"), &ctx).expect_err("scalar");
        assert!(err.to_string().ends_with("`trigger.body.age` is a number, not an array"), "{err}");
        let err = render(&json!("{{steps.lookup.output.body.tag.0}}"), &ctx).expect_err("null");
        assert!(err.to_string().ends_with("is null, not an object or array"), "{err}");
    }

    #[test]
    fn unknown_root_variable_is_reported() {
        let err = render(&json!("{{nothing.here}}"), &ctx()).expect_err("missing");
        assert_eq!(err.to_string(), "`nothing.here` does not exist: there is no variable `nothing`");
    }

    #[test]
    fn syntax_errors_surface_from_render() {
        assert!(matches!(render(&json!("{{oops"), &ctx()), Err(TemplateError::Syntax { .. })));
    }

    #[test]
    fn render_optional_gives_none_only_for_a_missing_single_expression() {
        let ctx = ctx();
        assert_eq!(render_optional(&json!("{{trigger.body.missing}}"), &ctx), Ok(None));
        assert_eq!(render_optional(&json!("{{trigger.body.email}}"), &ctx), Ok(Some(json!("a@b.c"))));
        assert_eq!(render_optional(&json!("{{steps.lookup.output.body.tag}}"), &ctx), Ok(Some(Value::Null)));
        assert_eq!(render_optional(&json!(5), &ctx), Ok(Some(json!(5))));
        assert!(render_optional(&json!("x {{trigger.body.missing}}"), &ctx).is_err());
    }

    #[test]
    fn lookup_and_accessors() {
        let ctx = ctx();
        assert_eq!(lookup(&ctx, &path("user.id")), Some(&json!("u1")));
        assert_eq!(lookup(&ctx, &path("user.name")), None);
        let template = Template::parse("a {{user.id}} b {{trigger.body.age}}").expect("valid");
        let exprs: Vec<String> = template.expressions().map(ToString::to_string).collect();
        assert_eq!(exprs, ["user.id", "trigger.body.age"]);
        assert!(template.as_single_expr().is_none());
        assert!(Template::parse(" {{user.id}}").expect("valid").as_single_expr().is_none());
        assert_eq!(
            Template::parse("{{ user.id }}").expect("valid").as_single_expr().map(|p| p.root()),
            Some(Some("user"))
        );
    }

    #[test]
    fn path_displays_as_dotted_text_with_brackets() {
        assert_eq!(path("steps.a.output.items.[0].id").to_string(), "steps.a.output.items[0].id");
        assert_eq!(path("steps.a.output.0").to_string(), "steps.a.output.0");
    }
}
