//! The utility libraries a Function step reaches through its `libraries` argument: pure
//! JavaScript builds vendored from npm into `shared/js/vendor/` (versions, licences and
//! checksums in its README) and compiled into the binary. Nothing is fetched at run time.
//!
//! Each library is evaluated lazily, the first time the function reads it, inside the run's
//! own context (so a function that mutates `_` cannot affect another run), in a scope that
//! gives it a CommonJS `module`/`exports`, an empty `window` and a `crypto.getRandomValues`
//! fed by the system random generator (uuid needs it). The loader is hidden from user code.

use rquickjs::{Ctx, Function};

/// A vendored library: the names it is reachable by, its source, and how the script gets its
/// value after evaluation.
pub struct Library {
    pub names: &'static [&'static str],
    pub version: &'static str,
    source: &'static str,
    /// A JS expression over `module` and `window` giving the library object.
    export: &'static str,
}

pub const LIBRARIES: &[Library] = &[
    Library {
        names: &["lodash", "_"],
        version: "lodash 4.17.21",
        source: include_str!("../../../js/vendor/lodash-4.17.21.min.js"),
        export: "module.exports",
    },
    Library {
        names: &["dateFns"],
        version: "date-fns 4.1.0",
        source: include_str!("../../../js/vendor/date-fns-4.1.0.cdn.min.js"),
        export: "window.dateFns",
    },
    Library {
        names: &["uuid"],
        version: "uuid 8.3.2",
        source: include_str!("../../../js/vendor/uuid-8.3.2.umd.min.js"),
        export: "module.exports",
    },
];

/// Installs `__librarySource(index)` and `__randomBytes(n)` as globals; the script moves them
/// into its closure and deletes them before user code runs.
pub fn install(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    globals.set(
        "__librarySource",
        Function::new(ctx.clone(), |index: usize| -> Option<String> {
            LIBRARIES.get(index).map(|library| library.source.to_string())
        })?,
    )?;
    globals.set(
        "__randomBytes",
        Function::new(ctx.clone(), |count: usize| -> Vec<u8> {
            let mut bytes = vec![0u8; count.min(65_536)];
            // The system generator failing is not recoverable; zeros would be worse than an error.
            if aws_lc_rs::rand::fill(&mut bytes).is_err() {
                return Vec::new();
            }
            bytes
        })?,
    )?;
    Ok(())
}

/// The JS (part of the setup module) that builds the frozen `libraries` object of lazy
/// getters (one per name; aliases share one evaluation).
pub fn script() -> String {
    let mut getters = String::new();
    for (index, library) in LIBRARIES.iter().enumerate() {
        for name in library.names {
            getters.push_str(&format!(
                "  Object.defineProperty(libs, '{name}', {{ enumerable: true, get: () => load({index}, '{version}', (module, window) => {export}) }});\n",
                export = library.export,
                version = library.version,
            ));
        }
    }
    format!(
        r#"
const libraries = (() => {{
  const source = globalThis.__librarySource, random = globalThis.__randomBytes;
  delete globalThis.__librarySource; delete globalThis.__randomBytes;
  const crypto = Object.freeze({{
    getRandomValues(array) {{
      if (!(array instanceof Uint8Array || array instanceof Uint16Array || array instanceof Uint32Array || array instanceof Int8Array || array instanceof Int16Array || array instanceof Int32Array))
        throw new TypeError('getRandomValues takes an integer typed array');
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      const fresh = random(bytes.length);
      if (fresh.length !== bytes.length) throw new Error('the system random generator failed');
      for (let i = 0; i < bytes.length; i++) bytes[i] = fresh[i];
      return array;
    }}
  }});
  const loaded = [];
  const load = (index, version, exported) => {{
    if (!(index in loaded)) {{
      const module = {{ exports: {{}} }}, window = {{}};
      try {{
        const body = (0, eval)('(function (module, exports, define, window, self, crypto) {{' + source(index) + '\n}})');
        body.call(undefined, module, module.exports, undefined, window, undefined, crypto);
      }} catch (e) {{
        if (e instanceof Error) e.message = 'loading ' + version + ' failed: ' + e.message;
        throw e;
      }}
      loaded[index] = exported(module, window);
    }}
    return loaded[index];
  }};
  const libs = {{}};
{getters}  return Object.freeze(libs);
}})();
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_files_match_the_checksums_in_their_readme() {
        let readme = include_str!("../../../js/vendor/README.md");
        for library in LIBRARIES {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, library.source.as_bytes());
            let hex: String = digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
            assert!(
                readme.contains(&format!("`{hex}`")),
                "{}: SHA-256 {hex} is not in the vendor README",
                library.version
            );
            let version = library.version.rsplit(' ').next().unwrap_or_default();
            assert!(readme.contains(&format!("@{version}`")), "{} is not in the vendor README", library.version);
        }
    }
}
