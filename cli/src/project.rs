//! Project folders for the CLI: loading one (every problem listed), the bundled example
//! project, and `sluice new integration`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sluice_shared::deploy::Outcome;
use sluice_shared::model::load::{self, project};
use sluice_shared::model::project::{CUSTOM_PREFIX, IMPLICIT_INTEGRATION, ProjectDefinition};
use sluice_shared::ports::{Deployment, Store};

use crate::dev::problem_list;

/// The example project `sluice dev` serves when its folder does not exist: (path inside the
/// project, contents).
pub const BUNDLED: &[(&str, &str)] = &[
    (
        "integrations/custom.democrm/config.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/config.yaml"),
    ),
    (
        "integrations/custom.democrm/inputs.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/inputs.yaml"),
    ),
    (
        "integrations/custom.democrm/workflows/contact-lookup.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/workflows/contact-lookup.yaml"),
    ),
    (
        "integrations/custom.democrm/workflows/contact-created.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/workflows/contact-created.yaml"),
    ),
    ("events/contact-created.yaml", include_str!("../../examples/project/events/contact-created.yaml")),
    (
        "integrations/custom.democrm/workflows/lead-created.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/workflows/lead-created.yaml"),
    ),
    (
        "integrations/custom.democrm/workflows/new-leads.yaml",
        include_str!("../../examples/project/integrations/custom.democrm/workflows/new-leads.yaml"),
    ),
    ("integrations/slack/config.yaml", include_str!("../../examples/project/integrations/slack/config.yaml")),
    ("integrations/slack/inputs.yaml", include_str!("../../examples/project/integrations/slack/inputs.yaml")),
    (
        "integrations/slack/workflows/deal-won.yaml",
        include_str!("../../examples/project/integrations/slack/workflows/deal-won.yaml"),
    ),
];

/// Loads the project (or plain folder of workflow files) at `dir`; an error lists every problem.
pub fn load(dir: &Path) -> anyhow::Result<ProjectDefinition> {
    let project = load::load_project(dir).map_err(|problems| anyhow::anyhow!(problem_list(&problems)))?;
    if project.workflows().next().is_none() && project.integrations.iter().all(|i| i.name == IMPLICIT_INTEGRATION) {
        bail!("no workflow files (*.yaml, *.yml, *.json) in {}", dir.display());
    }
    Ok(project)
}

/// Deploys `definition` as project `project_id` (`sluice_shared::deploy`): its workflows (a new
/// version only where a definition changed), its integrations and app events, and the
/// workflows it no longer has undeployed; one outcome per workflow.
pub async fn deploy_outcomes(
    store: &dyn Store,
    project_id: &str,
    definition: &ProjectDefinition,
) -> anyhow::Result<Vec<Outcome>> {
    Ok(sluice_shared::deploy::deploy_project(store, project_id, definition).await?)
}

/// [`deploy_outcomes`], then (source file, live deployment) of each workflow of `definition`.
pub async fn deploy(
    store: &dyn Store,
    project_id: &str,
    definition: &ProjectDefinition,
) -> anyhow::Result<Vec<(String, Deployment)>> {
    deploy_outcomes(store, project_id, definition).await?;
    let mut deployed = Vec::new();
    for (source, workflow) in definition.workflows() {
        let live = store
            .get_deployed(project_id, &workflow.id)
            .await?
            .with_context(|| format!("workflow `{}` was deployed but is not live", workflow.id))?;
        deployed.push((source.clone(), live));
    }
    Ok(deployed)
}

/// Writes the bundled example project into `dir` (replacing what an earlier start wrote).
pub fn write_bundled(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    for (path, text) in BUNDLED {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `sluice new integration NAME [--custom]`: writes `integrations/<folder>/` under `dir` with
/// a config.yaml, an inputs.yaml and an empty workflows folder; returns the folder.
pub fn scaffold(dir: &Path, name: &str, custom: bool) -> anyhow::Result<PathBuf> {
    let folder_name = match (custom, name.strip_prefix(CUSTOM_PREFIX)) {
        (_, Some(_)) => name.to_string(),
        (true, None) => format!("{CUSTOM_PREFIX}{name}"),
        (false, None) => name.to_string(),
    };
    if let Some(problem) = project::integration_name_problem(&folder_name) {
        bail!("{problem}");
    }
    let folder = dir.join(project::INTEGRATIONS_DIR).join(&folder_name);
    if folder.exists() {
        bail!("{} exists already", folder.display());
    }
    fs::create_dir_all(folder.join(project::WORKFLOWS_DIR))
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let display = folder_name.strip_prefix(CUSTOM_PREFIX).unwrap_or(&folder_name);
    let config = if folder_name.starts_with(CUSTOM_PREFIX) {
        custom_config(display)
    } else {
        format!(
            "# How {display} appears in the Connect Portal (docs/projects.md).\n\
             description: Connect your {display} account\n\
             overview: |\n  Connect {display} to sync your data.\n\
             accentColor: \"#4a154b\"\n"
        )
    };
    fs::write(folder.join(project::CONFIG_FILE), config)?;
    fs::write(
        folder.join(project::INPUTS_FILE),
        "# Integration-level user settings, read in workflows as {{settings.KEY}} (docs/projects.md).\n\
         # The `id` is what users' values are stored under: keep it when you rename the key.\n\
         # example:\n\
         #   id: example\n\
         #   type: text          # text, number, boolean, password, select, multi_select, field_mapping\n\
         #   title: An example setting\n\
         #   required: false\n",
    )?;
    fs::write(folder.join(project::WORKFLOWS_DIR).join(".gitkeep"), "")?;
    Ok(folder)
}

fn custom_config(name: &str) -> String {
    format!(
        r##"# A custom integration: how it appears in the Connect Portal, how its users
# authenticate and where its API is (docs/projects.md).
name: {name}
description: Connect your {name} account
overview: |
  Connect {name} to sync your data.
accentColor: "#1f6feb"
# oauth, oauth_client_credential, basic or api_key. For OAuth also set authorizationUrl,
# accessTokenUrl, scopes, clientId and clientSecret ("{{{{env.NAME}}}}"), usePKCEInCodeExchange.
authenticationType: api_key
apiBaseUrl: https://api.example.com
testEndpointPath: /me
# What every request to the integration carries (credentials are stored encrypted).
authorization:
  type: header
  name: X-API-Key
  value: "{{{{credentials.apiKey}}}}"
"##
    )
}
