//! Paginated requests: fetch page after page (cursor, `Link` header, page number or offset),
//! collecting the array at `items` of every page.
//!
//! Invariants: at most `max_pages` exchanges (the output's `truncated` says when the API had
//! more), each one through the outbound guard and each one
//! failing the whole step as a single request would (a retry starts again from the first
//! page); a page without an array at `items` fails terminally, naming the path and the page;
//! pagination also stops when the next page would be the one just fetched. A `Link` to
//! another origin is followed without the step's credentials (sensitive headers are dropped).

use serde_json::{Value, json};
use url::Url;

use super::Exchange;
use super::response::BodyKind;
use crate::model::Pagination;
use crate::record::StepError;
use crate::template::{self, PathExpr};

/// Fetches up to `max_pages` pages and returns `{status, headers, body, items, pages}` with
/// the last page's status, headers and body.
pub(super) async fn fetch_all(
    exchange: &Exchange<'_>,
    pagination: &Pagination,
    max_pages: u32,
) -> Result<Value, StepError> {
    let items_path = parse_path("items", pagination.items())?;
    let cursor_path = match pagination {
        Pagination::Cursor { cursor, .. } => Some(parse_path("cursor", cursor)?),
        Pagination::NextUrl { next, .. } => Some(parse_path("next", next)?),
        _ => None,
    };
    let base = &exchange.base_url;
    let mut url = first_url(base, pagination);
    let mut items: Vec<Value> = Vec::new();
    let mut pages: u32 = 0;
    let mut previous_cursor: Option<String> = None;
    loop {
        let page = exchange.fetch(url.clone(), pages + 1).await?;
        let body = page.body_value()?;
        page.ensure_accepted(&body, &exchange.req.checks)?;
        pages += 1;
        let output = page.output_with(body);
        let page_items = match template::resolve(&output, &items_path) {
            Ok(Value::Array(page_items)) => page_items,
            Ok(other) => {
                let kind = if page.kind() == BodyKind::Binary { "a binary body" } else { template::kind(other) };
                return Err(items_error(
                    format!("`{items_path}` is {kind}, not an array"),
                    pages,
                    &page.target,
                    output,
                ));
            }
            Err(error) => return Err(items_error(error.to_string(), pages, &page.target, output)),
        };
        let count = page_items.len() as u64;
        items.extend(page_items.iter().cloned());
        let next = {
            match pagination {
                Pagination::Cursor { param, .. } => {
                    let cursor =
                        cursor_path.as_ref().and_then(|path| template::lookup(&output, path)).and_then(cursor_text);
                    match cursor {
                        Some(cursor) if previous_cursor.as_ref() != Some(&cursor) => {
                            let next = with_params(base, &[(param.as_str(), cursor.clone())]);
                            previous_cursor = Some(cursor);
                            Some(next)
                        }
                        _ => None,
                    }
                }
                Pagination::Link { .. } => page.next_link().filter(|next| *next != url && *next != page.url),
                Pagination::NextUrl { .. } => cursor_path
                    .as_ref()
                    .and_then(|path| template::lookup(&output, path))
                    .and_then(cursor_text)
                    .and_then(|next| page.url.join(&next).ok())
                    .filter(|next| *next != url && *next != page.url),
                Pagination::Page { param, start, page_size, .. } => {
                    let full = count > 0 && page_size.is_none_or(|size| count >= size);
                    full.then(|| {
                        with_params(base, &[(param.as_str(), start.saturating_add(u64::from(pages)).to_string())])
                    })
                }
                Pagination::Offset { param, limit_param, limit, .. } => (*limit > 0 && count >= *limit).then(|| {
                    let offset = limit.saturating_mul(u64::from(pages));
                    with_params(
                        base,
                        &[(param.as_str(), offset.to_string()), (limit_param.as_str(), limit.to_string())],
                    )
                }),
            }
        };
        let (Some(next), false) = (next.as_ref(), pages >= max_pages) else {
            let mut output = output;
            output["items"] = Value::Array(items);
            output["pages"] = json!(pages);
            // Stopped by `max_pages` while the API had more.
            output["truncated"] = json!(next.is_some());
            return Ok(output);
        };
        url = next.clone();
    }
}

fn parse_path(field: &str, path: &str) -> Result<PathExpr, StepError> {
    PathExpr::parse(path).map_err(|e| StepError::terminal(format!("pagination `{field}`: {e}")))
}

fn items_error(why: String, page: u32, target: &str, output: Value) -> StepError {
    StepError::terminal(format!("pagination: no items array in page {page} of {target}: {why}")).with_details(output)
}

/// The first page: the step's URL, plus the first page number or offset.
fn first_url(base: &Url, pagination: &Pagination) -> Url {
    match pagination {
        Pagination::Cursor { .. } | Pagination::Link { .. } | Pagination::NextUrl { .. } => base.clone(),
        Pagination::Page { param, start, .. } => with_params(base, &[(param.as_str(), start.to_string())]),
        Pagination::Offset { param, limit_param, limit, .. } => {
            with_params(base, &[(param.as_str(), "0".to_string()), (limit_param.as_str(), limit.to_string())])
        }
    }
}

/// `base` with each of `params` set, replacing any value it had.
fn with_params(base: &Url, params: &[(&str, String)]) -> Url {
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(name, _)| !params.iter().any(|(param, _)| name == param))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mut url = base.clone();
    url.query_pairs_mut().clear().extend_pairs(kept).extend_pairs(params.iter().map(|(n, v)| (*n, v.as_str())));
    url
}

/// A cursor worth sending: a non-empty string or a number.
fn cursor_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_replace_earlier_values_and_keep_the_rest() -> Result<(), url::ParseError> {
        let base = Url::parse("https://x.example/items?page=1&q=a%20b")?;
        let url = with_params(&base, &[("page", "2".into()), ("size", "10".into())]);
        assert_eq!(url.as_str(), "https://x.example/items?q=a+b&page=2&size=10");
        Ok(())
    }

    #[test]
    fn only_non_empty_strings_and_numbers_are_cursors() {
        assert_eq!(cursor_text(&json!("abc")), Some("abc".into()));
        assert_eq!(cursor_text(&json!(42)), Some("42".into()));
        for value in [json!(""), json!(null), json!(false), json!({})] {
            assert_eq!(cursor_text(&value), None, "{value}");
        }
    }
}
