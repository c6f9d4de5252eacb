//! Parsing of template strings and of the paths inside `{{ ... }}`.
//!
//! Invariant: a parsed [`Template`] never holds two adjacent `Text` parts nor an empty
//! `Text` part, and every `Expr` holds a path of at least one segment whose first segment is a
//! [`Segment::Key`]. Anything that does not fit the grammar is a [`TemplateError::Syntax`]
//! naming the offending text.

use super::{Part, PathExpr, Segment, Template, TemplateError};

const OPEN: &str = "{{";
const CLOSE: &str = "}}";

/// Splits `text` into literal text and `{{ path }}` expressions.
pub(super) fn parse_template(text: &str) -> Result<Template, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(OPEN) {
        push_text(&mut parts, text, &rest[..open])?;
        let after_open = &rest[open + OPEN.len()..];
        let Some(close) = after_open.find(CLOSE) else {
            return Err(syntax(text, "`{{` is never closed with `}}`"));
        };
        let inner = &after_open[..close];
        parts.push(Part::Expr(parse_path_in(text, inner.trim())?));
        rest = &after_open[close + CLOSE.len()..];
    }
    push_text(&mut parts, text, rest)?;
    Ok(Template { parts })
}

fn push_text(parts: &mut Vec<Part>, whole: &str, literal: &str) -> Result<(), TemplateError> {
    if literal.contains(CLOSE) {
        return Err(syntax(whole, "`}}` without a matching `{{`"));
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal.to_string()));
    }
    Ok(())
}

/// Parses a path such as `steps.a.output.body.items[0].id` (no braces).
pub(super) fn parse_path(expr: &str) -> Result<PathExpr, TemplateError> {
    parse_path_in(expr, expr.trim())
}

/// Parses `expr`, reporting errors against `whole` (the full template text).
fn parse_path_in(whole: &str, expr: &str) -> Result<PathExpr, TemplateError> {
    if expr.is_empty() {
        return Err(syntax(whole, "empty `{{ }}`: write a variable such as `{{trigger.body.id}}`"));
    }
    let mut segments = Vec::new();
    let mut chars = expr.char_indices().peekable();
    // Whether the next segment must be a key (at the start and after a dot).
    let mut expect_key = true;
    while let Some(&(start, c)) = chars.peek() {
        if expect_key {
            if !is_key_char(c) {
                let message = if segments.is_empty() {
                    format!("`{expr}` must start with a variable name such as `trigger` or `steps`")
                } else {
                    format!("`{expr}` has an empty or invalid name after `.` at position {}", start + 1)
                };
                return Err(syntax(whole, &message));
            }
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if !is_key_char(c) {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            segments.push(Segment::Key(expr[start..end].to_string()));
            expect_key = false;
            continue;
        }
        match c {
            '.' => {
                chars.next();
                expect_key = true;
                // `a.[0]` is accepted as well as `a[0]`.
                if let Some(&(_, '[')) = chars.peek() {
                    expect_key = false;
                }
            }
            '[' => {
                chars.next();
                let mut digits = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    digits.push(c);
                }
                if !closed {
                    return Err(syntax(whole, &format!("`{expr}` has a `[` without `]`")));
                }
                let index = parse_index(&digits).ok_or_else(|| {
                    syntax(whole, &format!("`[{digits}]` in `{expr}` is not an array index (write e.g. `[0]`)"))
                })?;
                segments.push(Segment::Index(index));
            }
            other => {
                return Err(syntax(
                    whole,
                    &format!(
                        "`{expr}` contains `{other}` at position {}; names may hold only letters, digits, `_` and `-`, separated by `.`",
                        start + 1
                    ),
                ));
            }
        }
    }
    if expect_key {
        return Err(syntax(whole, &format!("`{expr}` ends with `.`")));
    }
    Ok(PathExpr { segments })
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn parse_index(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn syntax(text: &str, message: &str) -> TemplateError {
    TemplateError::Syntax { text: text.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(path: &PathExpr) -> Vec<String> {
        path.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.clone(),
                Segment::Index(i) => format!("[{i}]"),
            })
            .collect()
    }

    #[test]
    fn dotted_path_with_brackets_and_digits_parses_into_segments() {
        let path = parse_path("steps.a.output.body.items[0].id").expect("valid path");
        assert_eq!(keys(&path), ["steps", "a", "output", "body", "items", "[0]", "id"]);
        let path = parse_path("steps.a.output.0").expect("valid path");
        assert_eq!(path.segments[3], Segment::Key("0".into()));
        let path = parse_path("trigger.headers.x-source").expect("valid path");
        assert_eq!(keys(&path), ["trigger", "headers", "x-source"]);
        let path = parse_path("a[1][2].b.[3]").expect("valid path");
        assert_eq!(keys(&path), ["a", "[1]", "[2]", "b", "[3]"]);
    }

    #[test]
    fn whitespace_inside_braces_is_trimmed() {
        let template = parse_template("{{   trigger.body.x \t}}").expect("valid");
        assert_eq!(template.parts.len(), 1);
        assert!(matches!(&template.parts[0], Part::Expr(p) if p.to_string() == "trigger.body.x"));
    }

    #[test]
    fn text_and_expressions_alternate() {
        let template = parse_template("Bearer {{settings.key}} and {{user.id}}!").expect("valid");
        let kinds: Vec<&str> = template
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(_) => "text",
                Part::Expr(_) => "expr",
            })
            .collect();
        assert_eq!(kinds, ["text", "expr", "text", "expr", "text"]);
    }

    #[test]
    fn malformed_templates_are_syntax_errors_naming_the_text() {
        let cases = [
            ("hello {{trigger.body", "never closed"),
            ("hello }} there", "without a matching"),
            ("{{ }}", "empty"),
            ("{{trigger body}}", "contains ` `"),
            ("{{trigger..body}}", "empty or invalid name"),
            ("{{trigger.}}", "ends with `.`"),
            ("{{.trigger}}", "must start with a variable name"),
            ("{{[0]}}", "must start with a variable name"),
            ("{{a[x]}}", "not an array index"),
            ("{{a[1}}", "without `]`"),
            ("{{a$b}}", "contains `$`"),
            ("{{a {{b}}", "contains ` `"),
        ];
        for (text, needle) in cases {
            match parse_template(text) {
                Err(TemplateError::Syntax { text: t, message }) => {
                    assert_eq!(t, text);
                    assert!(message.contains(needle), "{text}: {message} should contain {needle}");
                }
                other => panic!("{text} should be a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn huge_index_is_rejected_not_wrapped() {
        assert!(parse_path("a[99999999999999999999999]").is_err());
    }
}
