//! The trigger function: every inbound HTTP route, behind the Lambda Function URL, served by
//! `sluice_shared::api::Api`.

use anyhow::Context;
use lambda_http::{Error, Request, RequestExt, service_fn};
use sluice_shared::api::Api;
use sluice_shared::config::{LambdaConfig, build_runtime};
use sluice_shared::telemetry::{self, FaasTrigger};
use trigger::{from_api_response, into_api_request};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_lambda().context("traces cannot be exported")?;
    let config = LambdaConfig::from_env().context("the trigger function cannot start")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let api = Api::new(build_runtime(&config, &sdk).await?);
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        let request_id = request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_default();
        telemetry::invocation(FaasTrigger::Http, &request_id);
        let response = api.handle(into_api_request(request)).await;
        telemetry::flush().await;
        Ok::<_, Error>(from_api_response(response))
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
