//! A fan-out step's own work: evaluating `over` to its items. Starting and joining the
//! branches is decided by the engine (`engine::fan_out`) and carried out by the interpreter.

use serde_json::Value;

use crate::model::FanOutStep;
use crate::record::StepError;
use crate::template;

/// The items `over` gives, or why it gives none (terminal).
pub fn evaluate(step: &FanOutStep, ctx: &Value) -> Result<Vec<Value>, StepError> {
    match template::render(&step.over, ctx) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(other) => Err(StepError::terminal(format!("`over` must give an array, got {}", template::kind(&other)))),
        Err(error) => Err(StepError::terminal(error.to_string())),
    }
}
