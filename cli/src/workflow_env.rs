//! The `{{env.NAME}}` values of `sluice dev`, as on AWS: every `SLUICE_ENV_<NAME>` variable of
//! its environment, over the `NAME=value` lines of an optional `--env-file`. Invariant: a
//! malformed line is an error naming the file and line; nothing is half-read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use sluice_shared::config::workflow_env;

/// The env file's values (if any), then every `SLUICE_ENV_*` variable of `vars` (which wins:
/// a variable set for one run overrides the file, as with dotenv files).
pub fn dev_env(
    env_file: Option<&Path>,
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = match env_file {
        None => BTreeMap::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            parse_env_file(&text).with_context(|| format!("{} is not an env file", path.display()))?
        }
    };
    env.extend(workflow_env(vars)?);
    Ok(env)
}

/// `NAME=value` lines (an optional `export ` before the name); blank lines and lines starting
/// with `#` are skipped; a value in matching single or double quotes is taken without them
/// (and may then hold `#` or surrounding spaces). A later line overrides an earlier one.
pub fn parse_env_file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            bail!("line {number}: expected NAME=value, got `{}`", trimmed.escape_debug());
        };
        let name = name.trim();
        let name = name.strip_prefix("export ").map(str::trim_start).unwrap_or(name);
        if !is_name(name) {
            bail!(
                "line {number}: `{}` is not a name (letters, digits and `_`, not starting with a digit)",
                name.escape_debug()
            );
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => match value[1..].strip_suffix(quote) {
                Some(inner) => inner,
                None => bail!("line {number}: the value of `{name}` opens a {quote} quote that does not close"),
            },
            _ => value,
        };
        env.insert(name.to_string(), value.to_string());
    }
    Ok(env)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_give_names_and_values_without_comments_blank_lines_or_quotes() {
        let text = "# the CRM\n\nCRM_URL=https://crm.example\n  export TOKEN = 'a # b '\nEMPTY=\n\
                    QUOTED=\"x=y\"\nCRM_URL=https://later.example\r\n";
        let env = parse_env_file(text).expect("valid");
        let expected = [("CRM_URL", "https://later.example"), ("EMPTY", ""), ("QUOTED", "x=y"), ("TOKEN", "a # b ")];
        assert_eq!(env, expected.map(|(k, v)| (k.to_string(), v.to_string())).into());
    }

    #[test]
    fn a_malformed_env_file_line_is_an_error_naming_the_line() {
        for (text, expected) in [
            ("A=1\njust words\n", "line 2: expected NAME=value, got `just words`"),
            ("A=1\n\n=x\n", "line 3: `` is not a name"),
            ("1A=x\n", "line 1: `1A` is not a name"),
            ("MY-NAME=x\n", "line 1: `MY-NAME` is not a name"),
            ("# c\nA=\"open\n", "line 2: the value of `A` opens a \" quote that does not close"),
            ("A='\n", "line 1: the value of `A` opens a ' quote"),
        ] {
            let error = parse_env_file(text).expect_err(text).to_string();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn sluice_env_variables_override_the_env_file() {
        let dir = std::env::temp_dir().join(format!("sluice-env-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("dev.env");
        std::fs::write(&file, "A=from-file\nB=from-file\n").expect("write");
        let vars = [("SLUICE_ENV_B", "from-var"), ("SLUICE_ENV_C", "c"), ("HOME", "/root")];
        let env = dev_env(Some(&file), vars.map(|(k, v)| (k.into(), v.into()))).expect("valid");
        let expected = [("A", "from-file"), ("B", "from-var"), ("C", "c")];
        assert_eq!(env, expected.map(|(k, v)| (k.to_string(), v.to_string())).into());

        std::fs::write(&file, "A=1\nnot a line\n").expect("write");
        let error = format!("{:#}", dev_env(Some(&file), []).expect_err("malformed"));
        assert!(error.contains("dev.env is not an env file: line 2: expected NAME=value"), "{error}");
        let missing = format!("{:#}", dev_env(Some(&dir.join("missing.env")), []).expect_err("missing"));
        assert!(missing.contains("cannot read") && missing.contains("missing.env"), "{missing}");
        let _removed = std::fs::remove_dir_all(&dir);
    }
}
