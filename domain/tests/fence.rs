//! The domain's fence, kept by Cargo: `sluice-domain` can only use the crates its manifest
//! lists, and this test keeps that list to data crates. A module of the domain that wanted
//! to call HTTP, a database or AWS would need one of the refused crates added here first, and
//! fails this test instead. (The runtime's modules — connect, OAuth, crypto, recovery,
//! adapters, the API — live in `sluice-shared`, which the domain cannot name: Cargo refuses a
//! dependency cycle.)

/// Crates the domain may depend on: formats, text and time, nothing that does I/O. `croner`
/// matches cron patterns and `jiff` resolves wall times in IANA zones (its zone data is
/// bundled in the binary, never read from the system) for schedule triggers.
const ALLOWED: &[&str] = &[
    "chrono",
    "croner",
    "jiff",
    "proptest",
    "regex",
    "schemars",
    "serde",
    "serde_json",
    "serde_yaml_ng",
    "thiserror",
    "url",
];

/// Crates that do network, database or process I/O, refused by name (including prefixes).
const REFUSED: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "axum",
    "rusqlite",
    "aws-",
    "aws_",
    "lambda",
    "sluice-shared",
    "rquickjs",
    "nix",
    "futures",
];

/// The dependency names of every `[*dependencies]` table of a Cargo manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_dependencies = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line.trim_matches(['[', ']']).ends_with("dependencies");
            continue;
        }
        if in_dependencies && let Some((name, _)) = line.split_once('=') {
            let name = name.trim().split('.').next().unwrap_or("").trim_matches('"');
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn the_domain_depends_only_on_data_crates() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("manifest");
    let names = dependencies(&manifest);
    assert!(names.contains(&"serde_json".to_string()), "the manifest's dependencies were not read: {names:?}");
    let refused: Vec<&String> = names.iter().filter(|n| REFUSED.iter().any(|r| n.starts_with(r))).collect();
    assert!(refused.is_empty(), "the domain may not depend on I/O crates: {refused:?}");
    let unknown: Vec<&String> = names.iter().filter(|n| !ALLOWED.contains(&n.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "a new domain dependency must be a data crate, added to ALLOWED with a reason: {unknown:?}"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!root.join("build.rs").exists(), "the domain has no build script");
}

#[test]
fn the_fence_reads_dotted_and_table_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nserde.workspace = true\ntokio = { version = \"1\" }\n\
                    [target.'cfg(unix)'.dependencies]\nhyper = \"1\"\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(dependencies(manifest), ["serde", "tokio", "hyper", "proptest"]);
}
